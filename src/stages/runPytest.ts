import { join } from 'node:path';
import { type RunResult, runBounded } from '../host/runBounded.js';
import { type BuildLayout, buildEnv } from '../pipeline/layout.js';
import type { StageContext } from './types.js';

/** Where the tests run: the build's tree, its venv (or the key's shared one), the runner's mark expression. */
export interface PytestPlace {
  layout: BuildLayout;
  mark: string;
  /** The shared environment the build's venv extends (read-only). */
  sharedEnv?: string;
  /** The key's ready environment, bound read-only as the venv (instead of the build's own). */
  venvDir?: string;
  /** Set when the repository selects affected tests: the run sees the selection's own directory. */
  selection?: unknown;
}

// Runs the build's Python with `args` (pytest, or coverage running pytest) as the test stage does: in the
// sandbox with the checkout writable, the runner's plugin told the mark expression (it narrows the repository's own
// -m rather than replacing it), its output appended to test.log.
export function runPytest(
  place: PytestPlace,
  ctx: StageContext,
  args: string[],
  env: Record<string, string>,
  timeoutMs: number,
  /** Runner files the run reads besides its plugin (seen in the sandbox at ctx.sandbox.runnerFile's path). */
  files: string[] = [],
): Promise<RunResult> {
  const { layout } = place;
  return runBounded(join(layout.inside.venv, 'bin', 'python'), args, {
    cwd: layout.inside.src,
    env: buildEnv(layout, { ...env, CI_RUNNER_PYTEST_MARK: place.mark }),
    timeoutMs,
    signal: ctx.signal,
    logFile: join(layout.reports, 'test.log'),
    launch: ctx.sandbox.launch({
      venv: true,
      write: ['src'],
      shared: place.sharedEnv,
      venvDir: place.venvDir,
      selection: place.selection !== undefined,
      files,
    }),
  });
}
