import { appendFile } from 'node:fs/promises';
import { constants } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { execa, type ResultPromise } from 'execa';
import { CiError, toError } from '../ops/errors.js';

export interface RunOptions {
  cwd: string;
  env: Record<string, string>;
  timeoutMs: number;
  signal: AbortSignal;
  /** The command line and the tail of its interleaved stdout and stderr are appended here. */
  logFile?: string;
  /** How much of each stream's tail is kept (the log file gets at most this much per command, too). */
  tailBytes?: number;
  /** Runs the command inside something (the build sandbox) instead of directly. */
  launch?: Launch;
}

/** How a wrapper (the build sandbox) runs a command: its own command line, and a hand-shake before it may start. */
export interface Launch {
  /** The command line that runs `command` in `cwd` (a directory as the wrapped command sees it). */
  wrap(command: string, args: string[], cwd: string): { command: string; args: string[] };
  /**
   * Called once the wrapper reported the pid of what it started (a JSON `child-pid` on fd 3); the wrapper waits on
   * fd 4 until this resolved. Returns what to undo when the command has ended.
   */
  started(childPid: number): Promise<() => void>;
  /** A seccomp filter the wrapper reads on fd 5 (bwrap --seccomp 5). */
  seccomp?: Buffer;
}

/** The wrapper's descriptors: its pid report, the go-ahead it waits for, the filter, and the started byte. */
export const LAUNCH_FDS = { infoFd: 3, blockFd: 4, seccompFd: 5, startedFd: 6 } as const;

/** What a captured output that was cut to its tail starts with. */
export const OUTPUT_TRUNCATED = '[...output truncated...]\n';

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
    return (this.truncated ? OUTPUT_TRUNCATED : '') + kept.toString('utf8');
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

/** Signals the kernel sends when a process crosses one of the build's limits. */
const LIMIT_SIGNALS: Record<string, string> = {
  SIGXFSZ: 'killed by SIGXFSZ: a file reached the file size limit',
  SIGXCPU: 'killed by SIGXCPU: the CPU time limit was reached',
  SIGKILL: 'killed by SIGKILL (out of memory, or the run was stopped)',
};

// What an exit status above 128 says about the signal that ended a command, when it is one of the limits'.
export function exitReason(exitCode: number): string | undefined {
  if (exitCode <= 128) return undefined;
  const name = Object.entries(constants.signals).find(([, number]) => number === exitCode - 128)?.[0];
  return name ? (LIMIT_SIGNALS[name] ?? `killed by ${name}`) : undefined;
}

// Reads the wrapper's pid report, lets the launcher attach what it needs, then lets the command start. On any
// failure the wrapper is killed, so the command never runs half set up.
async function handshake(child: ResultPromise, launch: Launch): Promise<() => void> {
  const info = child.stdio[LAUNCH_FDS.infoFd] as Readable | undefined;
  const go = child.stdio[LAUNCH_FDS.blockFd] as Writable | undefined;
  try {
    let text = '';
    const pid = await new Promise<number>((resolve, reject) => {
      info?.on('data', (chunk: Buffer) => {
        text += chunk.toString('utf8');
        const match = /"child-pid":\s*(\d+)/.exec(text);
        if (match) resolve(Number(match[1]));
      });
      info?.on('end', () => reject(new Error(`no pid reported (${text.trim() || 'nothing'})`)));
      info?.on('error', reject);
    });
    const cleanup = await launch.started(pid);
    go?.end('1');
    return cleanup;
  } catch (error) {
    killGroup(child.pid);
    child.kill('SIGKILL');
    throw error;
  }
}

/** How often a command is tried when the sandbox failed to set itself up around it (the command never ran). */
const SANDBOX_TRIES = 3;

// The sandbox failed before the command started (say, `bwrap: loopback: Failed RTM_NEWADDR`, seen when many
// sandboxes start at once): it exited without the byte the sandbox's last step writes on the runner's own channel.
// What the command itself prints or exits with never decides this.
function sandboxSetupFailed(result: Attempt): boolean {
  return result.kind === 'exited' && !result.commandStarted;
}

/** One run, and whether the wrapped command was reached at all (only a launched run can tell). */
type Attempt = RunResult & { commandStarted?: boolean };

// Runs one command bounded in time, cancellable, with only the given environment and its whole process group
// killed afterwards, so nothing the build started keeps running. When the sandbox around it fails to set up, it is
// tried again (nothing of it ran), and then reported as an infrastructure fault, not as the command's failure.
export async function runBounded(command: string, args: string[], options: RunOptions): Promise<RunResult> {
  for (let attempt = 1; ; attempt++) {
    const { commandStarted, ...result } = await runOnce(command, args, options);
    if (!options.launch || !sandboxSetupFailed({ ...result, commandStarted })) return result;
    const said = result.kind === 'exited' ? result.stderr.trim().split('\n')[0] : '';
    if (attempt >= SANDBOX_TRIES) {
      throw new CiError('SANDBOX_FAULT', `the build sandbox could not start: ${said}`, { retriable: true });
    }
    await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
  }
}

async function runOnce(command: string, args: string[], options: RunOptions): Promise<Attempt> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const tailBytes = options.tailBytes ?? 256 * 1024;
  const out = new Tail(tailBytes);
  const err = new Tail(tailBytes);
  const all = new Tail(tailBytes);
  const wrapped = options.launch?.wrap(command, args, options.cwd) ?? { command, args };
  const child = execa(wrapped.command, wrapped.args, {
    // A wrapped command's directory exists only inside the wrapper.
    cwd: options.launch ? '/' : options.cwd,
    env: options.env,
    extendEnv: false,
    detached: true,
    cleanup: true,
    buffer: false,
    reject: false,
    stdio: options.launch
      ? ['ignore', 'pipe', 'pipe', 'pipe', 'pipe', 'pipe', 'pipe']
      : ['ignore', 'pipe', 'pipe'],
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
  let commandStarted = false;
  if (options.launch) {
    const stdio = child.stdio as unknown as Array<Readable | Writable | undefined>;
    (stdio[LAUNCH_FDS.seccompFd] as Writable | undefined)?.end(options.launch.seccomp ?? Buffer.alloc(0));
    (stdio[LAUNCH_FDS.startedFd] as Readable | undefined)?.on('data', () => {
      commandStarted = true;
    });
  }
  // Settled into a value at once, so a failed hand-shake is never an unhandled rejection while the child ends.
  const setup = options.launch
    ? handshake(child, options.launch).then(
        (cleanup) => ({ cleanup }),
        (error: unknown) => ({ error: toError(error) }),
      )
    : undefined;
  const result = await child;
  killGroup(child.pid);
  const prepared = await setup;
  if (prepared && 'error' in prepared && !result.isCanceled && !result.timedOut) {
    const said = err.text().trim().split('\n').slice(-2).join(' ');
    throw new CiError(
      'SANDBOX_FAULT',
      `the build sandbox could not start: ${prepared.error.message}${said ? ` (${said})` : ''}`,
      {
        retriable: true,
        cause: prepared.error,
      },
    );
  }
  if (prepared && 'cleanup' in prepared) prepared.cleanup();
  if (options.logFile)
    await appendFile(options.logFile, `$ ${[command, ...args].join(' ')}\n${all.text()}\n`);
  const captured = { stdout: out.text(), stderr: err.text(), durationMs: elapsed() };
  if (result.timedOut) return { kind: 'timedOut', ...captured };
  if (result.isCanceled) return { kind: 'canceled', ...captured };
  if (result.exitCode === undefined) {
    if (result.signal) {
      const exitCode = 128 + (constants.signals[result.signal] ?? 0);
      return { kind: 'exited', exitCode, ...captured, commandStarted };
    }
    return {
      kind: 'notStarted',
      message: result.shortMessage ?? result.message ?? 'did not start',
      durationMs: elapsed(),
    };
  }
  return { kind: 'exited', exitCode: result.exitCode, ...captured, commandStarted };
}
