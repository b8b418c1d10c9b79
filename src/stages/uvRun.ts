import { join } from 'node:path';
import { type BuildLayout, buildEnv } from '../build/layout.js';
import type { Toolchain } from '../build/toolchain.js';
import { type RunResult, runBounded } from '../host/runBounded.js';
import { CiError } from '../ops/errors.js';
import type { SandboxAccess } from '../sandbox/buildSandbox.js';
import type { StageContext, StageResult } from './types.js';

// uv as the install stage runs it in the build's sandbox, and what its exit means for the stage.

/** Messages of faults outside the commit: the package index or the network, not the declarations. */
const INFRASTRUCTURE =
  /error sending request|failed to fetch|connection (refused|reset)|timed out|dns error|temporary failure in name resolution|tcp connect error|network is unreachable|HTTP status server error|status code: 5\d\d/i;
/** Where and how long uv runs: the build's checkout, the runner's uv, the install's time limit. */
export interface UvInput {
  layout: BuildLayout;
  toolchain: Toolchain;
  timeoutMs: number;
}

export type SandboxedUv = (args: string[], access: SandboxAccess) => Promise<RunResult>;

// uv in the build's sandbox, on the build's checkout, within the install's time limit, output to install.log.
export function sandboxedUv(input: UvInput, ctx: StageContext): SandboxedUv {
  const { layout, toolchain } = input;
  const env = buildEnv(
    layout,
    {
      UV_CACHE_DIR: join(layout.inside.tmp, 'uv-cache'),
      UV_LINK_MODE: 'copy',
      UV_PYTHON_DOWNLOADS: 'never',
      UV_NO_PROGRESS: '1',
    },
    { install: true },
  );
  return (args, access) =>
    runBounded(ctx.sandbox.tool(toolchain.uv), args, {
      cwd: layout.inside.src,
      env,
      timeoutMs: input.timeoutMs,
      signal: ctx.signal,
      logFile: join(layout.reports, 'install.log'),
      launch: ctx.sandbox.launch(access),
    });
}

function tail(result: RunResult, lines = 8): string {
  if (result.kind === 'notStarted') return result.message;
  return result.stderr.trim().split('\n').slice(-lines).join('\n');
}

/** A stage result that is not a pass. */
export type Outcome<V> = Exclude<StageResult<V>, { outcome: 'passed' }>;

// A finished uv run as the stage's verdict: undefined when it succeeded. Network trouble is the runner's fault
// (retried); anything else is the declarations' (FAILED).
export function verdict<V>(
  result: RunResult,
  what: string,
  timeoutMs: number,
  value: V,
): Outcome<V> | undefined {
  const durationMs = result.durationMs;
  switch (result.kind) {
    case 'canceled':
      return { outcome: 'canceled', durationMs, summary: 'canceled' };
    case 'timedOut':
      return { outcome: 'timedOut', durationMs, summary: `install exceeded ${timeoutMs} ms` };
    case 'notStarted':
      throw new CiError('PROCESS_NOT_STARTED', `uv could not start: ${result.message}`, { retriable: true });
    case 'exited':
      if (result.exitCode === 0) return undefined;
      if (INFRASTRUCTURE.test(result.stderr)) {
        throw new CiError('PACKAGE_INDEX_UNREACHABLE', `package index unreachable: ${tail(result, 3)}`, {
          retriable: true,
        });
      }
      return { outcome: 'failed', durationMs, summary: `${what}: ${tail(result, 5)}`, value };
  }
}
