import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Hosts of a test's own: a network namespace joined to this host by a veth pair, on documentation addresses
 * (198.51.100.0/24, a random /29 of it). `service` runs a Redis, `web` an HTTP server that logs every request.
 * Nothing here sends a packet anywhere but into that namespace.
 */
export interface TestHosts {
  service: string;
  web: string;
  redisPort: number;
  /** Connections the Redis accepted (its own counter), read from the host through the veth. */
  redisConnections(): Promise<number>;
  /** Every request line the web host logged. */
  webLog(): string;
  close(): Promise<void>;
}

async function ip(...args: string[]): Promise<void> {
  await run('ip', args);
}

async function waitFor(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await check().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${what} did not start`);
}

// Needs root and iproute2 (`ip netns`), as CI has.
export async function startTestHosts(): Promise<TestHosts> {
  const id = randomBytes(3).toString('hex');
  const ns = `cir-${id}`;
  const [outer, inner] = [`vh${id}`, `vn${id}`];
  const base = 8 * randomInt(1, 31);
  const [gateway, service, web] = [1, 2, 3].map((n) => `198.51.100.${base + n}`) as [string, string, string];
  const children: ChildProcess[] = [];
  let log = '';
  const close = async () => {
    for (const child of children) child.kill('SIGKILL');
    await ip('netns', 'del', ns).catch(() => undefined);
    await ip('link', 'del', outer).catch(() => undefined);
  };
  try {
    await ip('netns', 'add', ns);
    await ip('link', 'add', outer, 'type', 'veth', 'peer', 'name', inner);
    await ip('link', 'set', inner, 'netns', ns);
    await ip('addr', 'add', `${gateway}/29`, 'dev', outer);
    await ip('link', 'set', outer, 'up');
    const inside = (...args: string[]) => ip('netns', 'exec', ns, 'ip', ...args);
    await inside('addr', 'add', `${service}/29`, 'dev', inner);
    await inside('addr', 'add', `${web}/29`, 'dev', inner);
    await inside('link', 'set', inner, 'up');
    await inside('link', 'set', 'lo', 'up');
    const redis = spawn(
      'ip',
      [
        'netns',
        'exec',
        ns,
        'redis-server',
        '--bind',
        service,
        '--port',
        '6379',
        '--save',
        '',
        '--appendonly',
        'no',
        '--protected-mode',
        'no',
      ],
      { stdio: 'ignore' },
    );
    const http = spawn(
      'ip',
      ['netns', 'exec', ns, 'python3', '-u', '-m', 'http.server', '80', '--bind', web],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    children.push(redis, http);
    for (const stream of [http.stdout, http.stderr]) stream?.on('data', (chunk: Buffer) => (log += chunk));
    const redisConnections = async () => {
      const { stdout } = await run('redis-cli', ['-h', service, '-p', '6379', 'INFO', 'stats']);
      return Number(/total_connections_received:(\d+)/.exec(stdout)?.[1] ?? Number.NaN);
    };
    await waitFor(async () => (await redisConnections()) > 0, 'the test Redis');
    await waitFor(async () => log.includes('Serving HTTP'), 'the test web host');
    return { service, web, redisPort: 6379, redisConnections, webLog: () => log, close };
  } catch (error) {
    await close();
    throw error;
  }
}
