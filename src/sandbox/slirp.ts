import { execa } from 'execa';
import { CiError } from '../ops/errors.js';

const READY_TIMEOUT_MS = 10_000;

/** User-mode networking attached to a sandbox's network namespace; close() stops it. */
export interface UserNetwork {
  close(): void;
}

// Gives the network namespace of `pid` a route to the internet through slirp4netns, which forbids connections to
// the host's loopback (where the runner's Redis, Kafka and metrics listen). DNS is slirp's 10.0.2.3.
export async function attachUserNetwork(
  slirp: string,
  pid: number,
  privileged: boolean,
): Promise<UserNetwork> {
  // slirp4netns confines itself too: a seccomp filter always; started by root, also its own mount namespace with
  // the host's files read-only and its capabilities dropped (a rootless runner's slirp4netns cannot switch to the
  // sandbox's namespaced gid 0 for that: `setegid(0)` fails).
  const args = [
    '--configure',
    '--mtu=65520',
    '--disable-host-loopback',
    ...(privileged ? ['--enable-sandbox'] : []),
    '--enable-seccomp',
    '--ready-fd=3',
  ];
  if (!privileged) args.push(`--userns-path=/proc/${pid}/ns/user`, '--netns-type=path');
  args.push(privileged ? String(pid) : `/proc/${pid}/ns/net`, 'tap0');
  const child = execa(slirp, args, {
    stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
    reject: false,
    buffer: false,
    extendEnv: false,
    env: {},
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-2000);
  });
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no answer within 10 s')), READY_TIMEOUT_MS);
    child.stdio[3]?.once('data', () => {
      clearTimeout(timer);
      resolve();
    });
    void child.then(() => {
      clearTimeout(timer);
      reject(new Error(`exited: ${stderr.trim()}`));
    });
  });
  try {
    await ready;
  } catch (error) {
    child.kill('SIGKILL');
    throw new CiError(
      'SANDBOX_FAULT',
      `slirp4netns could not give the install sandbox a network: ${String(error)}`,
      {
        retriable: true,
        cause: error,
      },
    );
  }
  return { close: () => void child.kill('SIGKILL') };
}
