import { readBuildJson } from '../pipeline/readBuildFile.js';

/** What the runner's pytest plugin (python/ci_runner_pytest_plugin.py) says of a test run, checked. */
export interface PluginResults {
  exit_status: number | null;
  /** The test that had started and not finished when the file was written (a run killed at its limit). */
  running?: string | null;
  ran: number;
  collected?: number;
  failed: string[];
  mark_expression?: string;
  /** Marks of the runner's expression the repository does not declare: the expression was not applied. */
  undeclared_marks?: string[];
  /** Test functions that made no items, since the -m expression deselects every item they could make. */
  unmade_functions?: number;
}

/** Bounds on what a build's plugin file may claim: the tests run in the build's sandbox, and may rewrite it. */
export const MAX_FAILED_IDS = 100_000;
export const MAX_ID_BYTES = 4 * 1024;
const MAX_RESULTS_BYTES = 16 * 1024 * 1024;

const count = (value: unknown): value is number => Number.isInteger(value) && (value as number) >= 0;
const shortText = (value: unknown): value is string =>
  typeof value === 'string' && Buffer.byteLength(value) <= MAX_ID_BYTES;

const wellFormed = (text: string) => Buffer.from(text, 'utf8').toString('utf8');

// The plugin's results as the runner may trust their shape: every field typed, `failed` at most MAX_FAILED_IDS node
// ids of at most MAX_ID_BYTES each. Anything else is no results at all (the stage then reports pytest's exit).
export function checkPluginResults(raw: unknown): PluginResults | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  const value = raw as Record<string, unknown>;
  const {
    failed,
    ran,
    collected,
    running,
    mark_expression,
    exit_status,
    undeclared_marks,
    unmade_functions,
  } = value;
  if (!Array.isArray(failed) || failed.length > MAX_FAILED_IDS || !failed.every(shortText)) return undefined;
  if (!count(ran) || (collected !== undefined && !count(collected))) return undefined;
  if (running !== undefined && running !== null && !shortText(running)) return undefined;
  if (mark_expression !== undefined && !shortText(mark_expression)) return undefined;
  const marks = Array.isArray(undeclared_marks) && undeclared_marks.length <= 20 ? undeclared_marks : [];
  if (!marks.every(shortText)) return undefined;
  if (exit_status !== null && exit_status !== undefined && !Number.isInteger(exit_status)) return undefined;
  return {
    exit_status: (exit_status as number | undefined) ?? null,
    ran,
    // Well-formed UTF-8 (a lone surrogate from an undecodable file name would make the report unencodable).
    failed: failed.map(wellFormed),
    ...(collected === undefined ? {} : { collected }),
    ...(typeof running === 'string' ? { running } : {}),
    ...(typeof mark_expression === 'string' ? { mark_expression } : {}),
    ...(marks.length > 0 ? { undeclared_marks: marks } : {}),
    ...(count(unmade_functions) && unmade_functions > 0 ? { unmade_functions } : {}),
  };
}

// Reads and checks pytest-results.json from the build's out/ directory.
export async function readPluginResults(out: string): Promise<PluginResults | undefined> {
  return checkPluginResults(await readBuildJson(out, 'pytest-results.json', MAX_RESULTS_BYTES));
}
