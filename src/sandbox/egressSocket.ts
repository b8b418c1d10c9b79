import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A Unix socket's path must fit in sockaddr_un (108 bytes with its terminating zero). */
const MAX_SOCKET_PATH = 100;

/** Where a build's egress proxy listens, and how to remove what was made for it. */
export interface EgressSocket {
  path: string;
  release(): Promise<void>;
}

// In the build's own sandbox directory (the runner's, never the build's to write), or, when that path is too long
// for a socket, in a fresh directory of the runner's own (mkdtemp: unpredictable, 0700) under the temporary
// directory. The build sees the socket only through its bind.
export async function egressSocket(sandboxDir: string): Promise<EgressSocket> {
  const own = join(sandboxDir, 'egress.sock');
  if (Buffer.byteLength(own) <= MAX_SOCKET_PATH) return { path: own, release: async () => undefined };
  const dir = await mkdtemp(join(tmpdir(), 'ci-runner-egress-'));
  return { path: join(dir, 'egress.sock'), release: () => rm(dir, { recursive: true, force: true }) };
}
