import { OUTPUT_TRUNCATED } from '../host/runBounded.js';
import type { InstalledLintTool } from './ensureLintTool.js';
import { rememberedDiffs } from './formatterDiffs.js';
import type { LintInput } from './lint.js';
import { type LintEntry, splitDiffs } from './lintFindings.js';
import { runLintTool } from './runLintTool.js';
import type { StageContext } from './types.js';

/** Files whose formatter diff is asked for (the report carries at most one diff per file, 4 KiB each). */
const MAX_DIFFED_FILES = 20;

// The diffs the formatter would apply to the first files it would reformat (one more run, only when there are any):
// the agent can apply them as they are.
export async function withFormatterDiffs(
  input: LintInput,
  ctx: StageContext,
  tools: { ruffTool: InstalledLintTool; blackTool?: InstalledLintTool },
  entries: LintEntry[],
  /** The formatter and its version, as the stage's summary names them (what the diffs are remembered under). */
  formatter: string,
): Promise<void> {
  const files = entries
    .filter((entry) => entry.detail.fixable && entry.detail.tool !== 'ruff' && entry.detail.path)
    .slice(0, MAX_DIFFED_FILES)
    .map((entry) => entry.detail.path);
  if (files.length === 0) return;
  const compute = async (missing: string[]) => {
    const result =
      input.plan.formatter.tool === 'ruff'
        ? await runLintTool(input, ctx, 'ruff', tools.ruffTool.ruff, ['format', '--diff', '--', ...missing])
        : tools.blackTool
          ? await runLintTool(input, ctx, 'black', tools.blackTool.python, [
              '-I',
              '-m',
              'black',
              '--diff',
              '--quiet',
              '--',
              ...missing,
            ])
          : undefined;
    if (result?.kind !== 'exited') return undefined;
    const seen = new Set<string>();
    const diffs = splitDiffs(result.stdout, input.layout.inside.src, seen);
    // A diff too large for the report is an answer too (none to carry), unless the output was cut: then the files
    // whose diffs were cut off are unknown.
    if (!result.stdout.startsWith(OUTPUT_TRUNCATED)) {
      for (const path of seen) if (!diffs.has(path)) diffs.set(path, '');
    }
    return diffs;
  };
  const place = {
    cacheDir: input.cacheDir,
    repository: input.repository,
    formatter,
    tree: input.layout.lintTree,
  };
  // A memory that cannot be read or written costs this build the formatter's run, never its findings.
  const diffs = await rememberedDiffs(place, files, compute).catch(
    async () => (await compute(files)) ?? new Map<string, string>(),
  );
  for (const entry of entries) {
    const diff = entry.detail.tool !== 'ruff' ? diffs.get(entry.detail.path) : undefined;
    if (diff) entry.detail.diff = diff;
  }
}
