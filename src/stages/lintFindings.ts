import { relative, resolve } from 'node:path';
import type { LintFinding } from '../delivery/contracts.js';
import { reportText } from './testFailures.js';

/** One finding of ruff's JSON output (the fields the runner reads). */
export interface RuffFinding {
  code: string | null;
  message: string;
  filename: string;
  location: { row: number; column: number };
  fix?: { applicability?: string } | null;
}

/** A finding as the report's two lists carry it: its one-line entry and its fields. */
export interface LintEntry {
  text: string;
  detail: LintFinding;
}

/** A formatter's diff for one file is carried when it is at most this long. */
export const MAX_DIFF_BYTES = 4096;

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

// `ruff format --check`'s output as `path: would reformat` / `path: cannot format (reason)` entries, in either of its
// forms: `Would reformat: <path>` (before 0.16) or concise diagnostics (`<path>:1:2: unformatted: ...`).
export function parseRuffFormatOutput(output: string, root: string): string[] {
  const findings = new Set<string>();
  for (const line of output.split('\n').map((text) => text.trim())) {
    const reformat = /^Would reformat: (.+)$/.exec(line) ?? /^(.+?):\d+:\d+: unformatted: /.exec(line);
    if (reformat?.[1]) findings.add(`${repoPath(root, reformat[1])}: would reformat`);
    const broken =
      /^error: Failed to parse (.+?):(\d+):(\d+): (.+)$/.exec(line) ??
      /^(.+?):(\d+):(\d+): invalid-syntax: (.+)$/.exec(line);
    if (broken?.[1]) {
      findings.add(
        `${repoPath(root, broken[1])}: cannot format (${broken[4]} at line ${broken[2]}, column ${broken[3]})`,
      );
    }
    const failed = /^error: Failed to format (.+?): (.+)$/.exec(line);
    if (failed?.[1]) findings.add(`${repoPath(root, failed[1])}: cannot format (${failed[2]})`);
  }
  return [...findings];
}

// ruff's JSON findings as report entries: `path:line:col: CODE message` and their fields.
export function ruffEntries(findings: RuffFinding[], root: string): LintEntry[] {
  const texts = formatRuffFindings(findings, root);
  return findings.map((f, index) => ({
    text: texts[index] ?? '',
    detail: {
      tool: 'ruff',
      path: reportText(repoPath(root, f.filename), 1024),
      line: f.location.row,
      column: f.location.column,
      code: reportText(f.code ?? 'E999', 64),
      message: reportText(f.message, 2048),
      fixable: typeof f.fix === 'object' && f.fix !== null,
      diff: '',
    },
  }));
}

// A formatter's `path: would reformat` / `path: cannot format (why[ at line L, column C])` entry with its fields.
export function formatterEntry(tool: 'black' | 'ruff-format', text: string): LintEntry {
  const reformat = /^(.*): would reformat$/.exec(text);
  const broken = /^(.*): cannot format \((.*?)(?: at line (\d+), column (\d+))?\)$/.exec(text);
  const path = reformat?.[1] ?? broken?.[1] ?? '';
  return {
    text,
    detail: {
      tool,
      path: reportText(path, 1024),
      line: Number(broken?.[3] ?? 0),
      column: Number(broken?.[4] ?? 0),
      code: '',
      message: reportText(reformat ? 'would reformat' : `cannot format: ${broken?.[2] ?? text}`, 2048),
      fixable: reformat !== null,
      diff: '',
    },
  };
}

function diffText(text: string): string {
  return (
    Buffer.from(text, 'utf8')
      .toString('utf8')
      // biome-ignore lint/suspicious/noControlCharactersInRegex: colour and control characters are what is removed
      .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')
      // biome-ignore lint/suspicious/noControlCharactersInRegex: as above (tab, newline, CR and form feed kept)
      .replace(/[\x00-\x08\x0b\x0e-\x1f\x7f]/g, '?')
  );
}

// A formatter's `--diff` output split per file (`--- <path>` headers, black's timestamps dropped), paths relative to
// the repository root; a diff over MAX_DIFF_BYTES is left out (its file still added to `seen`).
export function splitDiffs(output: string, root: string, seen?: Set<string>): Map<string, string> {
  const diffs = new Map<string, string>();
  // A file's diff starts with a `--- ` line directly followed by `+++ ` (a removed line may itself start `-- `).
  const parts = output.split(/^(?=--- [^\n]*\n\+\+\+ )/m).filter((part) => part.startsWith('--- '));
  for (const part of parts) {
    const lines = part.split('\n');
    const path = repoPath(root, (lines[0] ?? '').slice(4).split('\t')[0]?.trim() ?? '');
    const headers = lines.map((line) =>
      line.startsWith('--- ') || line.startsWith('+++ ')
        ? `${line.slice(0, 4)}${repoPath(root, line.slice(4).split('\t')[0]?.trim() ?? '')}`
        : line,
    );
    // The file's own bytes as the patch needs them (\r of CRLF, form feeds); colour and other controls removed.
    const diff = diffText(headers.join('\n').replace(/\n+$/, '\n'));
    seen?.add(path);
    if (Buffer.byteLength(diff) <= MAX_DIFF_BYTES) diffs.set(path, diff);
  }
  return diffs;
}
