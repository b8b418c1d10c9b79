import { appendFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { execa } from 'execa';

export interface RunOptions {
  cwd: string;
  env: Record<string, string>;
  timeoutMs: number;
  signal: AbortSignal;
  /** The command line and the tail of its interleaved stdout and stderr are appended here. */
  logFile?: string;
  /** How much of each stream's tail is kept (the log file gets at most this much per command, too). */
  tailBytes?: number;
}

export type RunResult =
  | { kind: 'exited'; exitCode: number; stdout: string; stderr: string; durationMs: number }
  | { kind: 'timedOut'; stdout: string; stderr: string; durationMs: number }
  | { kind: 'canceled'; stdout: string; stderr: string; durationMs: number }
  | { kind: 'notStarted'; message: string; durationMs: number };

const KILL_GRACE_MS = 3_000;

class Tail {
  private chunks: Buffer[] = [];
  private size = 0;
  truncated = false;

  constructor(private readonly limit: number) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > this.limit && this.chunks.length > 1) {
      const dropped = this.chunks.shift() as Buffer;
      this.size -= dropped.length;
      this.truncated = true;
    }
  }

  text(): string {
    const all = Buffer.concat(this.chunks);
    const kept = all.length > this.limit ? all.subarray(all.length - this.limit) : all;
    if (kept.length < all.length) this.truncated = true;
    return (this.truncated ? '[...output truncated...]\n' : '') + kept.toString('utf8');
  }
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // The group is already gone.
  }
}

// Runs one command bounded in time, cancellable, with only the given environment and its whole process group
// killed afterwards, so nothing the build started keeps running.
export async function runBounded(command: string, args: string[], options: RunOptions): Promise<RunResult> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const tailBytes = options.tailBytes ?? 256 * 1024;
  const out = new Tail(tailBytes);
  const err = new Tail(tailBytes);
  const all = new Tail(tailBytes);
  const child = execa(command, args, {
    cwd: options.cwd,
    env: options.env,
    extendEnv: false,
    detached: true,
    cleanup: true,
    buffer: false,
    reject: false,
    stdin: 'ignore',
    timeout: options.timeoutMs,
    cancelSignal: options.signal,
    forceKillAfterDelay: KILL_GRACE_MS,
  });
  child.stdout?.on('data', (chunk: Buffer) => {
    out.push(chunk);
    all.push(chunk);
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    err.push(chunk);
    all.push(chunk);
  });
  const result = await child;
  killGroup(child.pid);
  if (options.logFile)
    await appendFile(options.logFile, `$ ${[command, ...args].join(' ')}\n${all.text()}\n`);
  const captured = { stdout: out.text(), stderr: err.text(), durationMs: elapsed() };
  if (result.timedOut) return { kind: 'timedOut', ...captured };
  if (result.isCanceled) return { kind: 'canceled', ...captured };
  if (result.exitCode === undefined) {
    if (result.signal) {
      return { kind: 'exited', exitCode: 128 + (constants.signals[result.signal] ?? 0), ...captured };
    }
    return {
      kind: 'notStarted',
      message: result.shortMessage ?? result.message ?? 'did not start',
      durationMs: elapsed(),
    };
  }
  return { kind: 'exited', exitCode: result.exitCode, ...captured };
}
