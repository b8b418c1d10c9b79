import { join } from 'node:path';
import { type RunResult, runBounded } from '../host/runBounded.js';
import { CiError } from '../ops/errors.js';
import { type BuildLayout, buildEnv } from '../pipeline/layout.js';
import type { Toolchain } from '../pipeline/toolchain.js';
import type { SandboxAccess } from '../sandbox/buildSandbox.js';
import { reportText } from './testFailures.js';
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
      NO_COLOR: '1',
      ...ctx.sandbox.egressEnv(),
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

/** The resolver's or build backend's own words quoted in an install failure, at most (the end kept). */
const QUOTE_MAX_BYTES = 2048;

// What an install that failed on the commit's declarations could not do, named from uv's own report: the requirement
// it could not resolve or the distribution it could not build, then uv's last lines (the backend's output included).
export function describeInstallFailure(stderr: string): string {
  const text = reportText(stderr, Number.MAX_SAFE_INTEGER).trim();
  const unresolved =
    /Because (?:there is no version of |there are no versions of |only )?`?([A-Za-z0-9][A-Za-z0-9._\-[\]]*(?:\s*[=<>!~]=?\s*[^\s,`]+)?)`? (?:was not found|is not available|(?:and|,) )/.exec(
      text,
    )?.[1];
  const built = /Failed to (?:build|download|prepare distributions for|install) `([^`]+)`/.exec(text)?.[1];
  const named = built
    ? `\`${built}\` could not be built`
    : unresolved
      ? `\`${unresolved}\` could not be resolved`
      : /build backend returned an error/.test(text)
        ? 'the project could not be built'
        : 'uv failed';
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  return `${named}\n${reportText(lines.slice(-30).join('\n'), QUOTE_MAX_BYTES, true)}`;
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
      return {
        outcome: 'failed',
        durationMs,
        summary: `${what}: ${describeInstallFailure(result.stderr)}`,
        value,
      };
  }
}
