import { fileURLToPath } from 'node:url';
import type { SandboxMount } from './bwrapArgs.js';

/** Where the egress proxy's socket appears in the sandbox, and the loopback port forwarded to it. */
export const EGRESS_SOCKET = '/ci/egress.sock';
const EGRESS_PORT = 3128;
const FORWARDER = fileURLToPath(new URL('../../python/ci_runner_egress_forward.py', import.meta.url));
const FORWARDER_INSIDE = '/ci/runner/ci_runner_egress_forward.py';

/** The forwarder, read-only in every sandbox that has egress (and in the one that proves the host at start-up). */
export const FORWARDER_MOUNT: SandboxMount = { source: FORWARDER, target: FORWARDER_INSIDE };

/** The proxy's address inside the sandbox, in every variable uv, pip and urllib read; nothing bypasses it. */
export const PROXY_ENV: Readonly<Record<string, string>> = (() => {
  const url = `http://127.0.0.1:${EGRESS_PORT}`;
  const env: Record<string, string> = { NO_PROXY: '', no_proxy: '' };
  for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY']) {
    env[name] = url;
    env[name.toLowerCase()] = url;
  }
  return Object.freeze(env);
})();

// `command args` run behind the forwarder: it listens on the sandbox's 127.0.0.1:3128 first, then runs the command.
export function behindForwarder(python: string, command: string, args: string[]): [string, string[]] {
  return [python, ['-I', '-S', FORWARDER_INSIDE, String(EGRESS_PORT), EGRESS_SOCKET, '--', command, ...args]];
}
