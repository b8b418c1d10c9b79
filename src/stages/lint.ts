import { mkdir, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { type BuildLayout, buildEnv } from '../build/layout.js';
import { parseBuildJson, readBuildFile } from '../build/readBuildFile.js';
import type { Toolchain } from '../build/toolchain.js';
import { type RunResult, runBounded } from '../host/runBounded.js';
import { CiError } from '../ops/errors.js';
import { lintCache } from './lintCache.js';
import type { StageContext, StageResult } from './types.js';

export interface LintInput {
  layout: BuildLayout;
  toolchain: Toolchain;
  timeoutMs: number;
  /** The repository (without credentials): its lint caches are its own. */
  repository: string;
  cacheDir: string;
}

/** One entry per finding: `path:line:col: CODE message` (ruff) or `path: would reformat` (black). */
export interface LintValue {
  findings: string[];
}

interface RuffFinding {
  code: string | null;
  message: string;
  filename: string;
  location: { row: number; column: number };
}

// A tool's path (absolute or relative to the repository root) as a path relative to the root.
function repoPath(root: string, path: string): string {
  return relative(root, resolve(root, path)) || path;
}

// ruff's JSON findings as `path:line:col: CODE message`, paths relative to the repository root.
export function formatRuffFindings(findings: RuffFinding[], root: string): string[] {
  return findings.map((f) => {
    const path = repoPath(root, f.filename);
    return `${path}:${f.location.row}:${f.location.column}: ${f.code ?? 'E999'} ${f.message}`;
  });
}

// black --check's stderr as `path: would reformat` / `path: cannot format (reason)` entries. black 26 reports a
// file it cannot parse as `error: cannot parse: <path>:<line>:<col>`, the source line, a caret and the error.
export function parseBlackOutput(stderr: string, root: string): string[] {
  const findings: string[] = [];
  const lines = stderr.split('\n').map((line) => line.trim());
  lines.forEach((line, index) => {
    const reformat = /^would reformat (.+)$/.exec(line);
    if (reformat?.[1]) findings.push(`${repoPath(root, reformat[1])}: would reformat`);
    const broken = /^error: cannot format (.+?): (.+)$/.exec(line);
    if (broken?.[1]) findings.push(`${repoPath(root, broken[1])}: cannot format (${broken[2]})`);
    const unparsable = /^error: cannot parse: (.+):(\d+):(\d+)$/.exec(line);
    if (unparsable?.[1]) {
      const why =
        lines.slice(index + 1, index + 5).find((next) => /^\w*Error\b/.test(next)) ?? 'cannot parse';
      findings.push(
        `${repoPath(root, unparsable[1])}: cannot format (${why} at line ${unparsable[2]}, column ${unparsable[3]})`,
      );
    }
  });
  return findings;
}

/** ruff's JSON for tens of thousands of findings runs to tens of megabytes. */
const MAX_RUFF_REPORT_BYTES = 64 * 1024 * 1024;

function unexpected(tool: string, result: RunResult): never {
  const detail = result.kind === 'notStarted' ? result.message : `${result.kind}`;
  throw new CiError('PROCESS_NOT_STARTED', `${tool} could not run: ${detail}`, { retriable: true });
}

// Runs one of the runner's lint tools on lint's own copy of the commit (read-only, at the source path), with lint's
// own home and the repository's kept cache: nothing the tests write can reach it.
function runTool(
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

function toolError(tool: string, exitCode: number, stderr: string): string {
  return `${tool}: exited ${exitCode}: ${stderr.trim().split('\n').slice(-3).join(' ')}`;
}

// black --check through the runner's driver (python/ci_runner_black.py): black itself, which also remembers the
// files black would reformat, by content, so that such a file unchanged since an earlier build is not formatted again.
async function black(input: LintInput, ctx: StageContext): Promise<string[] | RunResult> {
  const driver = join(input.toolchain.pluginDir, 'ci_runner_black.py');
  const args = [ctx.sandbox.runnerFile(driver), '--check', '.'];
  const result = await runTool(input, ctx, 'black', input.toolchain.python, args, [driver]);
  if (result.kind !== 'exited') return result;
  const remembered = /^ci-runner: (\d+) file\(s\) black would reformat.*$/m.exec(result.stderr);
  if (remembered) ctx.log(remembered[0].replace(/^ci-runner: /, 'lint: '));
  if (result.exitCode === 0) return [];
  const findings = parseBlackOutput(result.stderr, input.layout.inside.src).sort();
  return findings.length > 0 ? findings : [toolError('black', result.exitCode, result.stderr)];
}

async function ruff(input: LintInput, ctx: StageContext): Promise<string[] | RunResult> {
  const { layout } = input;
  const output = join(layout.inside.lint, 'ruff.json');
  const args = ['check', '--output-format', 'json', '--output-file', output, '--exit-zero', '.'];
  const result = await runTool(input, ctx, 'ruff', input.toolchain.ruff, args);
  if (result.kind !== 'exited') return result;
  if (result.exitCode !== 0) return [toolError('ruff', result.exitCode, result.stderr)];
  // Read once, as a plain file in lint's own directory: what is kept is what was parsed.
  const bytes = await readBuildFile(layout.lint, 'ruff.json', MAX_RUFF_REPORT_BYTES);
  if (bytes) await writeFile(join(layout.reports, 'ruff.json'), bytes);
  const findings = parseBuildJson<RuffFinding[]>(bytes);
  if (!Array.isArray(findings)) return ['ruff: its report is missing or unreadable'];
  return formatRuffFindings(findings, layout.inside.src);
}

// Runs black --check and ruff check side by side with the repository's own configuration; one entry per finding.
// Their caches are the repository's, kept from its previous build: a file whose content was linted before is not
// linted again (its path and its blob-derived mtime match).
export async function run(input: LintInput, ctx: StageContext): Promise<StageResult<LintValue>> {
  const started = performance.now();
  const { layout } = input;
  const cache = lintCache(input.cacheDir, input.repository, input.toolchain.fingerprint);
  const cacheDir = join(layout.lint, 'cache');
  const warm = await cache.restore(cacheDir);
  ctx.log(
    `lint caches: ${warm ? "the repository's, from its previous build" : 'none yet for this repository'}`,
  );
  await Promise.all(
    ['home', 'tmp', 'cache'].map((dir) => mkdir(join(layout.lint, dir), { recursive: true })),
  );
  await ctx.sandbox.handOver([layout.lint]);
  const [blackOut, ruffOut] = await Promise.all([black(input, ctx), ruff(input, ctx)]);
  if (Array.isArray(blackOut) && Array.isArray(ruffOut)) await cache.save(cacheDir);
  const durationMs = Math.round(performance.now() - started);
  const findings: string[] = [];
  for (const [tool, out] of [
    ['black', blackOut],
    ['ruff', ruffOut],
  ] as const) {
    if (Array.isArray(out)) {
      findings.push(...out);
      continue;
    }
    if (out.kind === 'canceled') return { outcome: 'canceled', durationMs, summary: 'canceled' };
    if (out.kind === 'timedOut') {
      return { outcome: 'timedOut', durationMs, summary: `${tool} exceeded ${input.timeoutMs} ms` };
    }
    unexpected(tool, out);
  }
  if (findings.length === 0)
    return { outcome: 'passed', durationMs, summary: 'lint clean', value: { findings } };
  return {
    outcome: 'failed',
    durationMs,
    summary: `${findings.length} lint finding(s)`,
    value: { findings },
  };
}
