import { join } from 'node:path';
import { type RunResult, runBounded } from '../host/runBounded.js';
import { buildEnv } from '../pipeline/layout.js';
import type { LintInput } from './lint.js';
import type { StageContext } from './types.js';

// Runs one of the runner's lint tools on lint's own copy of the commit (read-only, at the source path), with lint's
// own home and the repository's kept cache: nothing the tests write can reach it.
export function runLintTool(
  input: LintInput,
  ctx: StageContext,
  tool: 'black' | 'ruff',
  command: string,
  args: string[],
  files: string[] = [],
): Promise<RunResult> {
  const { layout } = input;
  const { lint } = layout.inside;
  const cache = join(lint, 'cache');
  return runBounded(ctx.sandbox.tool(command), args, {
    cwd: layout.inside.src,
    env: buildEnv(layout, {
      HOME: join(lint, 'home'),
      TMPDIR: join(lint, 'tmp'),
      [`${tool.toUpperCase()}_CACHE_DIR`]: join(cache, tool),
      ...(tool === 'black' ? { CI_RUNNER_BLACK_VERDICTS: join(cache, 'black-verdicts.json') } : {}),
    }),
    timeoutMs: input.timeoutMs,
    signal: ctx.signal,
    logFile: join(layout.reports, 'lint.log'),
    launch: ctx.sandbox.launch({ lint: true, files }),
  });
}
