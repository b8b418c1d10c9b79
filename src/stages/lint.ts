import { readFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { CiError } from '../errors.js';
import { type RunResult, runBounded } from '../process.js';
import { type BuildLayout, buildEnv } from './layout.js';
import type { Toolchain } from './toolchain.js';
import type { StageContext, StageResult } from './types.js';

export interface LintInput {
  layout: BuildLayout;
  toolchain: Toolchain;
  timeoutMs: number;
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

// black --check's stderr as `path: would reformat` / `path: cannot format (reason)` entries.
export function parseBlackOutput(stderr: string, root: string): string[] {
  const findings: string[] = [];
  for (const line of stderr.split('\n')) {
    const reformat = /^would reformat (.+)$/.exec(line.trim());
    if (reformat?.[1]) findings.push(`${repoPath(root, reformat[1])}: would reformat`);
    const broken = /^error: cannot format (.+?): (.+)$/.exec(line.trim());
    if (broken?.[1]) findings.push(`${repoPath(root, broken[1])}: cannot format (${broken[2]})`);
  }
  return findings;
}

function unexpected(tool: string, result: RunResult): never {
  const detail = result.kind === 'notStarted' ? result.message : `${result.kind}`;
  throw new CiError('RUNNER_FAULT', `${tool} could not run: ${detail}`, { retriable: true });
}

async function black(input: LintInput, ctx: StageContext): Promise<string[] | RunResult> {
  const { layout } = input;
  const result = await runBounded(input.toolchain.python, ['-m', 'black', '--check', '.'], {
    cwd: layout.src,
    env: buildEnv(layout, { BLACK_CACHE_DIR: join(layout.tmp, 'black-cache') }),
    timeoutMs: input.timeoutMs,
    signal: ctx.signal,
    logFile: join(layout.reports, 'lint.log'),
  });
  if (result.kind !== 'exited') return result;
  if (result.exitCode === 0) return [];
  const findings = parseBlackOutput(result.stderr, layout.src);
  if (findings.length > 0) return findings;
  return [`black: exited ${result.exitCode}: ${result.stderr.trim().split('\n').slice(-3).join(' ')}`];
}

async function ruff(input: LintInput, ctx: StageContext): Promise<string[] | RunResult> {
  const { layout } = input;
  const output = join(layout.reports, 'ruff.json');
  const result = await runBounded(
    input.toolchain.python,
    ['-m', 'ruff', 'check', '--output-format', 'json', '--output-file', output, '--exit-zero', '.'],
    {
      cwd: layout.src,
      env: buildEnv(layout, { RUFF_CACHE_DIR: join(layout.tmp, 'ruff-cache') }),
      timeoutMs: input.timeoutMs,
      signal: ctx.signal,
      logFile: join(layout.reports, 'lint.log'),
    },
  );
  if (result.kind !== 'exited') return result;
  if (result.exitCode !== 0) {
    return [`ruff: exited ${result.exitCode}: ${result.stderr.trim().split('\n').slice(-3).join(' ')}`];
  }
  return formatRuffFindings(JSON.parse(await readFile(output, 'utf8')) as RuffFinding[], layout.src);
}

// Runs black --check and ruff check side by side with the repository's own configuration; one entry per finding.
export async function run(input: LintInput, ctx: StageContext): Promise<StageResult<{ findings: string[] }>> {
  const started = performance.now();
  const [blackOut, ruffOut] = await Promise.all([black(input, ctx), ruff(input, ctx)]);
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
