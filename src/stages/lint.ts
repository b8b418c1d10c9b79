import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LintFinding } from '../delivery/contracts.js';
import type { RunResult } from '../host/runBounded.js';
import { CiError } from '../ops/errors.js';
import type { BuildLayout } from '../pipeline/layout.js';
import { parseBuildJson, readBuildFile } from '../pipeline/readBuildFile.js';
import type { Toolchain } from '../pipeline/toolchain.js';
import { type InstalledLintTool, PinRefused } from './ensureLintTool.js';
import { lintCache } from './lintCache.js';
import {
  formatterEntry,
  type LintEntry,
  parseBlackOutput,
  parseRuffFormatOutput,
  type RuffFinding,
  ruffEntries,
} from './lintFindings.js';
import { CLASSIC_RUFF_RULES, compareVersions, type LintPlan, type ToolVersion } from './lintPlan.js';
import { lintTools, WaitEnded } from './lintTools.js';
import { runLintTool } from './runLintTool.js';
import type { StageContext, StageResult } from './types.js';
import { withFormatterDiffs } from './withFormatterDiffs.js';

export interface LintInput {
  layout: BuildLayout;
  toolchain: Toolchain;
  timeoutMs: number;
  /** The repository (without credentials): its lint caches are its own. */
  repository: string;
  cacheDir: string;
  /** The formatter and the tool versions the repository's own rules call for. */
  plan: LintPlan;
}

/** One entry per finding: `path:line:col: CODE message` (ruff) or `path: would reformat` (black, ruff format). */
export interface LintValue {
  findings: string[];
  /** The same findings as the tools reported them, one per entry, in the same order. */
  details: LintFinding[];
}

// An entry that is not one of the tool's findings but says why the tool gave none (it failed, or could not run).
function toolEntry(tool: LintFinding['tool'], text: string): LintEntry {
  return {
    text,
    detail: { tool, path: '', line: 0, column: 0, code: '', message: text, fixable: false, diff: '' },
  };
}

/** ruff's JSON for tens of findings runs to tens of megabytes. */
const MAX_RUFF_REPORT_BYTES = 64 * 1024 * 1024;

function unexpected(tool: string, result: RunResult): never {
  const detail = result.kind === 'notStarted' ? result.message : `${result.kind}`;
  throw new CiError('PROCESS_NOT_STARTED', `${tool} could not run: ${detail}`, { retriable: true });
}

function toolError(tool: string, exitCode: number, stderr: string): string {
  return `${tool}: exited ${exitCode}: ${stderr.trim().split('\n').slice(-3).join(' ')}`;
}

// black --check through the runner's driver (python/ci_runner_black.py): black itself, which also remembers the
// files black would reformat, by content, so that such a file unchanged since an earlier build is not formatted again.
async function black(
  input: LintInput,
  ctx: StageContext,
  tool: InstalledLintTool,
): Promise<LintEntry[] | RunResult> {
  const driver = join(input.toolchain.pluginDir, 'ci_runner_black.py');
  const args = [ctx.sandbox.runnerFile(driver), '--check', '.'];
  const result = await runLintTool(input, ctx, 'black', tool.python, args, [driver]);
  if (result.kind !== 'exited') return result;
  const remembered = /^ci-runner: (\d+) file\(s\) black would reformat.*$/m.exec(result.stderr);
  if (remembered) ctx.log(remembered[0].replace(/^ci-runner: /, 'lint: '));
  if (result.exitCode === 0) return [];
  return formatterEntries('black', parseBlackOutput(result.stderr, input.layout.inside.src), result);
}

// A formatter's findings as entries, by path; when it failed without any, why.
function formatterEntries(
  tool: 'black' | 'ruff-format',
  findings: string[],
  result: { exitCode: number; stderr: string },
): LintEntry[] {
  if (findings.length === 0) {
    const name = tool === 'black' ? 'black' : 'ruff format';
    return [toolEntry(tool, toolError(name, result.exitCode, result.stderr))];
  }
  return findings.sort().map((text) => formatterEntry(tool, text));
}

// `ruff format --check` (concise diagnostics from 0.16, when the default became a full diff).
async function ruffFormat(
  input: LintInput,
  ctx: StageContext,
  tool: InstalledLintTool,
  version: ToolVersion,
): Promise<LintEntry[] | RunResult> {
  const concise = compareVersions(version.version, '0.16.0') >= 0 ? ['--output-format', 'concise'] : [];
  const args = ['format', '--check', ...concise, '.'];
  const result = await runLintTool(input, ctx, 'ruff', tool.ruff, args);
  if (result.kind !== 'exited') return result;
  if (result.exitCode === 0) return [];
  const output = `${result.stdout}\n${result.stderr}`;
  return formatterEntries('ruff-format', parseRuffFormatOutput(output, input.layout.inside.src), result);
}

// `ruff check`, never fixing (a repository's `fix = true` must not hide what its own hook would fail on); a
// repository that does not configure ruff is held to the classic default rules, whatever ruff's version.
async function ruff(
  input: LintInput,
  ctx: StageContext,
  tool: InstalledLintTool,
): Promise<LintEntry[] | RunResult> {
  const { layout } = input;
  const output = join(layout.inside.lint, 'ruff.json');
  const rules = input.plan.ruffConfigured ? [] : ['--select', CLASSIC_RUFF_RULES];
  const args = [
    'check',
    '--no-fix',
    ...rules,
    '--output-format',
    'json',
    '--output-file',
    output,
    '--exit-zero',
    '.',
  ];
  const result = await runLintTool(input, ctx, 'ruff', tool.ruff, args);
  if (result.kind !== 'exited') return result;
  if (result.exitCode !== 0) return [toolEntry('ruff', toolError('ruff', result.exitCode, result.stderr))];
  // Read once, as a plain file in lint's own directory: what is kept is what was parsed.
  const bytes = await readBuildFile(layout.lint, 'ruff.json', MAX_RUFF_REPORT_BYTES);
  if (bytes) await writeFile(join(layout.reports, 'ruff.json'), bytes);
  const findings = parseBuildJson<RuffFinding[]>(bytes);
  if (!Array.isArray(findings)) return [toolEntry('ruff', 'ruff: its report is missing or unreadable')];
  return ruffEntries(findings, layout.inside.src);
}

// What lint ran, for the stage's summary: "ruff 0.15.9, ruff format 0.15.9".
function versions(plan: LintPlan): string {
  const formatter =
    plan.formatter.tool === 'ruff'
      ? `, ruff format ${plan.ruff.version}`
      : plan.black
        ? `, black ${plan.black.version}`
        : ', no formatter';
  return `ruff ${plan.ruff.version}${formatter}`;
}

// Runs ruff check and the repository's formatter side by side, each at the version the repository pins (else the
// runner's own), with the repository's own configuration; one entry per finding. Their caches are the repository's,
// kept from its previous build with the same versions: a file linted before is not linted again.
export async function run(input: LintInput, ctx: StageContext): Promise<StageResult<LintValue>> {
  const started = performance.now();
  const { layout, plan } = input;
  const elapsed = () => Math.round(performance.now() - started);
  let installed: Awaited<ReturnType<typeof lintTools>>;
  try {
    installed = await lintTools(input, ctx);
  } catch (error) {
    if (error instanceof WaitEnded) {
      const summary = error.canceled
        ? 'canceled'
        : `installing ${error.message} exceeded ${input.timeoutMs} ms`;
      return { outcome: error.canceled ? 'canceled' : 'timedOut', durationMs: elapsed(), summary };
    }
    if (!(error instanceof PinRefused)) throw error;
    const entry = toolEntry(error.message.startsWith('black==') ? 'black' : 'ruff', error.message);
    const value = { findings: [entry.text], details: [entry.detail] };
    return { outcome: 'failed', durationMs: elapsed(), summary: entry.text, value };
  }
  const cacheKey = `${input.toolchain.fingerprint} ${versions(plan)} ${plan.ruffConfigured}`;
  const cache = lintCache(input.cacheDir, input.repository, cacheKey);
  const cacheDir = join(layout.lint, 'cache');
  const warm = await cache.restore(cacheDir);
  ctx.log(
    `lint caches: ${warm ? "the repository's, from its previous build" : 'none yet for this repository'}`,
  );
  await Promise.all(
    ['home', 'tmp', 'cache'].map((dir) => mkdir(join(layout.lint, dir), { recursive: true })),
  );
  await ctx.sandbox.handOver([layout.lint]);
  const { ruffTool, blackTool } = installed;
  const formatter =
    plan.formatter.tool === 'ruff'
      ? ruffFormat(input, ctx, ruffTool, plan.ruff)
      : blackTool
        ? black(input, ctx, blackTool)
        : Promise.resolve([]);
  const [formatOut, ruffOut] = await Promise.all([formatter, ruff(input, ctx, ruffTool)]);
  if (Array.isArray(formatOut) && Array.isArray(ruffOut)) await cache.save(cacheDir);
  let durationMs = elapsed();
  const entries: LintEntry[] = [];
  const formatterName = plan.formatter.tool === 'ruff' ? 'ruff format' : 'black';
  for (const [tool, out] of [
    [formatterName, formatOut],
    ['ruff', ruffOut],
  ] as const) {
    if (Array.isArray(out)) {
      entries.push(...out);
      continue;
    }
    if (out.kind === 'canceled') return { outcome: 'canceled', durationMs, summary: 'canceled' };
    if (out.kind === 'timedOut') {
      return { outcome: 'timedOut', durationMs, summary: `${tool} exceeded ${input.timeoutMs} ms` };
    }
    unexpected(tool, out);
  }
  const ran = versions(plan);
  if (entries.length === 0) {
    const value = { findings: [], details: [] };
    return { outcome: 'passed', durationMs, summary: `lint clean (${ran})`, value };
  }
  await withFormatterDiffs(input, ctx, installed, entries, ran);
  durationMs = elapsed();
  const value = {
    findings: entries.map((entry) => entry.text),
    details: entries.map((entry) => entry.detail),
  };
  return { outcome: 'failed', durationMs, summary: `${entries.length} lint finding(s) (${ran})`, value };
}
