import { reportText } from './testFailures.js';

/** The tools lint can run: ruff (check, and format when it is the formatter) and black. */
export type LintTool = 'ruff' | 'black';
/** The formatter a repository is judged by; `none` skips formatting (ruff check still runs). */
export type Formatter = LintTool | 'none';

/** A version of a tool, and where it came from. */
export interface ToolVersion {
  version: string;
  /** The pin's file and form (`.pre-commit-config.yaml (rev v0.15.9)`), or the runner's own. */
  source: string;
  /** The repository pinned it (it is installed on demand); otherwise it is the runner's own. */
  pinned: boolean;
}

/** What the repository's own files say about its lint (python/ci_runner_lint_profile.py, read in the sandbox). */
export interface LintProfile {
  formatter: { tool: LintTool; reason: string };
  pins: Partial<Record<LintTool, { version: string; source: string }>>;
  /** What was noticed but not used (a pin that is not an exact version, a broken config file). */
  notes: string[];
  /** The repository configures ruff itself (else ruff checks the long-standing default rules only). */
  ruffConfigured: boolean;
}

/** What lint runs: the formatter and the versions, each with its reason. */
export interface LintPlan {
  formatter: { tool: Formatter; reason: string };
  ruff: ToolVersion;
  /** Set when black is the formatter. */
  black?: ToolVersion;
  ruffConfigured: boolean;
  notes: string[];
}

/** ruff's default rule selection before 0.16 widened it: what a repository that does not configure ruff is held to. */
export const CLASSIC_RUFF_RULES = 'E4,E7,E9,F';

/** An exact release: never a range, a URL or anything an installer would read as an option. */
export const EXACT_VERSION = /^\d{1,4}(\.\d{1,6}){1,3}((a|b|rc)\d{1,4})?(\.post\d{1,4})?$/;

/** The oldest version of each tool whose command line the runner speaks (ruff: `ruff format`; black: its API). */
// (black before 22.3.0 breaks on any click from 8.1 on, which a fresh install of it gets.)
export const OLDEST_SUPPORTED: Record<LintTool, string> = { ruff: '0.1.2', black: '22.3.0' };

const MAX_TEXT = 300;
const MAX_NOTES = 10;

// Repository text as the report and the log may carry it: valid UTF-8, no control characters, bounded.
const text = (value: unknown): string | undefined =>
  typeof value === 'string' && value.length > 0 ? reportText(value, MAX_TEXT) : undefined;

// The reader's answer, checked field by field (it ran on the repository's files): anything unexpected is left out.
export function parseLintProfile(raw: unknown): LintProfile {
  const fallback = "the runner's default: the repository names no formatter";
  const profile: LintProfile = {
    formatter: { tool: 'black', reason: fallback },
    pins: {},
    notes: [],
    ruffConfigured: false,
  };
  if (typeof raw !== 'object' || raw === null) return profile;
  const { formatter, pins, notes, ruff_configured } = raw as Record<string, unknown>;
  if (typeof formatter === 'object' && formatter !== null) {
    const { tool, reason } = formatter as Record<string, unknown>;
    if (tool === 'ruff' || tool === 'black') profile.formatter = { tool, reason: text(reason) ?? fallback };
  }
  if (typeof pins === 'object' && pins !== null) {
    for (const tool of ['ruff', 'black'] as const) {
      const pin = (pins as Record<string, unknown>)[tool];
      if (typeof pin !== 'object' || pin === null) continue;
      const { version, source } = pin as Record<string, unknown>;
      if (typeof version === 'string' && EXACT_VERSION.test(version))
        profile.pins[tool] = { version, source: text(source) ?? 'the repository' };
    }
  }
  if (Array.isArray(notes)) profile.notes = notes.flatMap((note) => text(note) ?? []).slice(0, MAX_NOTES);
  profile.ruffConfigured = ruff_configured === true;
  return profile;
}

// Compares two exact versions by their release numbers (pre-releases sort with their release).
export function compareVersions(a: string, b: string): number {
  const parts = (version: string) => (version.match(/^[\d.]+\d/)?.[0] ?? '0').split('.').map(Number);
  const [left, right] = [parts(a), parts(b)];
  for (let i = 0; i < Math.max(left.length, right.length); i += 1) {
    const difference = (left[i] ?? 0) - (right[i] ?? 0);
    if (difference !== 0) return difference;
  }
  return 0;
}

// Decides what lint runs: [tool.ci-runner] formatter over what the repository's files say; each tool at the
// repository's pin, else at the runner's own version.
export function planLint(
  profile: LintProfile,
  formatterSetting: Formatter | undefined,
  runner: Record<LintTool, string>,
): LintPlan {
  const version = (tool: LintTool): ToolVersion => {
    const pin = profile.pins[tool];
    return pin
      ? { version: pin.version, source: pin.source, pinned: true }
      : { version: runner[tool], source: "the runner's own", pinned: false };
  };
  const formatter = formatterSetting
    ? { tool: formatterSetting, reason: '[tool.ci-runner] formatter' }
    : profile.formatter;
  return {
    formatter,
    ruff: version('ruff'),
    ...(formatter.tool === 'black' ? { black: version('black') } : {}),
    ruffConfigured: profile.ruffConfigured,
    notes: profile.notes,
  };
}

// "ruff format 0.15.9 (pre-commit hook ruff-format; version: .pre-commit-config.yaml (rev v0.15.9))".
export function describeFormatter(plan: LintPlan): string {
  const { tool, reason } = plan.formatter;
  if (tool === 'none') return `formatter: none (${reason})`;
  const used = tool === 'ruff' ? plan.ruff : (plan.black as ToolVersion);
  const name = tool === 'ruff' ? 'ruff format' : 'black';
  return `formatter: ${name} ${used.version} (${reason}; version: ${used.source})`;
}
