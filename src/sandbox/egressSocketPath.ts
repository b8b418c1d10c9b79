import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A Unix socket's path must fit in sockaddr_un (108 bytes with its terminating zero). */
const MAX_SOCKET_PATH = 100;

// Where a build's egress proxy listens: in the build's own sandbox directory, or, when that path is too long for a
// socket, in a directory of the runner's own under the temporary directory (the build sees it only through a bind).
export async function egressSocketPath(sandboxDir: string): Promise<string> {
  const own = join(sandboxDir, 'egress.sock');
  if (Buffer.byteLength(own) <= MAX_SOCKET_PATH) return own;
  const dir = join(tmpdir(), `ci-runner-egress-${process.getuid?.() ?? 0}`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return join(dir, `${randomBytes(8).toString('hex')}.sock`);
}
