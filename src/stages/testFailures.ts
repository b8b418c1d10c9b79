import type { TestFailure } from '../delivery/contracts.js';
import { readBuildFile, readBuildJson } from '../pipeline/readBuildFile.js';

/** What the runner's pytest plugin wrote of the failures it saw (pytest-results.json.failures), as read. */
export interface FailureDetails {
  /** The first failures in full, by node id. */
  details: Map<string, Omit<TestFailure, 'nodeId'>>;
  /** Every failure's kind, by node id. */
  kinds: Map<string, TestFailure['kind']>;
}

const KINDS = new Set(['failed', 'error', 'collection', 'timeout', 'crashed', 'flaky']);
const MESSAGE_MAX = 2048;
const TRACEBACK_MAX = 8192;
const OUTPUT_MAX = 2048;
const MAX_FILE_BYTES = 4 * 1024 * 1024;
/** Failures described in full; the rest carry their node id and kind only. */
export const DETAILED_FAILURES = 50;
/** Bytes of details (message, location, traceback, output) a report carries at most, over all its failures. */
export const FAILURE_DETAIL_BUDGET = 256 * 1024;

// Text as a report may carry it, whatever the build wrote: valid UTF-8 (invalid bytes replaced), no colour, no
// control characters, no more than `max` bytes (the start kept, or the end with `keepEnd`).
export function reportText(value: unknown, max: number, keepEnd = false): string {
  if (typeof value !== 'string') return '';
  const text = Buffer.from(value, 'utf8')
    .toString('utf8')
    // biome-ignore lint/suspicious/noControlCharactersInRegex: colour and control characters are what is removed
    .replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07/g, '')
    // biome-ignore lint/suspicious/noControlCharactersInRegex: as above
    .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '?');
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= max) return text;
  if (keepEnd) {
    const kept = bytes
      .subarray(bytes.length - max)
      .toString('utf8')
      .replace(/^\uFFFD+/, '');
    return `(${bytes.length - Buffer.byteLength(kept)} bytes before) …${kept}`;
  }
  const kept = bytes
    .subarray(0, max)
    .toString('utf8')
    .replace(/\uFFFD+$/, '');
  return `${kept}… (${bytes.length - Buffer.byteLength(kept)} bytes more)`;
}

// A location is `path:line` inside the repository's tree: relative, never climbing out of it.
function location(value: unknown): string {
  const text = reportText(value, 1024);
  if (!/^[^/\0][^\0]*:\d+$/.test(text) || text.split('/').includes('..')) return '';
  return text;
}

// Reads and checks the plugin's failure details from the build's out/ directory (the build may have rewritten it:
// every field is checked and bounded again).
export async function readFailureDetails(out: string): Promise<FailureDetails> {
  const raw = await readBuildJson<{ details?: unknown; kinds?: unknown }>(
    out,
    'pytest-results.json.failures',
    MAX_FILE_BYTES,
  );
  const found: FailureDetails = { details: new Map(), kinds: new Map() };
  if (typeof raw?.kinds === 'object' && raw.kinds !== null) {
    for (const [id, kind] of Object.entries(raw.kinds)) {
      if (typeof kind === 'string' && KINDS.has(kind)) found.kinds.set(id, kind as TestFailure['kind']);
    }
  }
  if (typeof raw?.details === 'object' && raw.details !== null) {
    for (const [id, detail] of Object.entries(raw.details).slice(0, DETAILED_FAILURES)) {
      if (typeof detail !== 'object' || detail === null) continue;
      const d = detail as Record<string, unknown>;
      found.details.set(id, {
        kind: typeof d.kind === 'string' && KINDS.has(d.kind) ? (d.kind as TestFailure['kind']) : 'failed',
        message: reportText(d.message, MESSAGE_MAX),
        location: location(d.location),
        traceback: reportText(d.traceback, TRACEBACK_MAX, true),
        output: reportText(d.output, OUTPUT_MAX, true),
      });
    }
  }
  return found;
}

// One failure as the report carries it: the plugin's details when it described this node id, else its kind alone.
export function failureOf(nodeId: string, found: FailureDetails): TestFailure {
  const detail = found.details.get(nodeId);
  if (detail) return { nodeId, ...detail };
  return {
    nodeId,
    kind: found.kinds.get(nodeId) ?? 'failed',
    message: '',
    location: '',
    traceback: '',
    output: '',
  };
}

// Where a test hung, from the stacks the plugin's watchdog wrote just before the time limit (faulthandler's dump):
// the stack of the thread that was inside the repository's code, paths relative to its root, no addresses.
export async function hangStack(
  out: string,
  src: string,
  workers: number,
): Promise<{ location: string; traceback: string } | undefined> {
  const names = ['main', ...Array.from({ length: workers }, (_, i) => `gw${i}`)];
  for (const name of names) {
    const text = (await readBuildFile(out, `pytest-results.json.stack-${name}`, 1024 * 1024))?.toString(
      'utf8',
    );
    if (!text) continue;
    const threads = text.split(/\n(?=(?:Current thread|Thread) 0x)/);
    for (const thread of threads) {
      const frames = [...thread.matchAll(/^ {2}File "(.+)", line (\d+) in (.+)$/gm)];
      const inside = frames.find(([, path]) => path?.startsWith(`${src}/`));
      if (!inside) continue;
      const shown = frames
        .map(([, path, line, name]) => {
          const where = path?.startsWith(`${src}/`) ? path.slice(src.length + 1) : path;
          return `  File "${where}", line ${line} in ${name}`;
        })
        .join('\n');
      return {
        location: location(`${inside[1]?.slice(src.length + 1)}:${inside[2]}`),
        traceback: reportText(
          `Stack when the time limit stopped it (most recent call first):\n${shown}`,
          TRACEBACK_MAX,
          true,
        ),
      };
    }
  }
  return undefined;
}

// The report's failures within its bounds: the first DETAILED_FAILURES in full while their details fit the budget,
// the rest with node id and kind only; returns them and how many were cut so.
export function boundFailures(failures: TestFailure[]): { failures: TestFailure[]; truncated: number } {
  let budget = FAILURE_DETAIL_BUDGET;
  let detailed = 0;
  const bytes = (failure: TestFailure) =>
    Buffer.byteLength(failure.message + failure.location + failure.traceback + failure.output, 'utf8');
  // A hang or a crash (one entry, the whole run's fate) is described first, whatever came before it.
  const order = failures
    .map((failure, index) => ({ failure, index }))
    .sort((a, b) => Number(isFatal(b.failure)) - Number(isFatal(a.failure)) || a.index - b.index);
  const kept = new Set<number>();
  for (const { failure, index } of order) {
    const size = bytes(failure);
    if (size === 0 || detailed >= DETAILED_FAILURES || size > budget) continue;
    budget -= size;
    detailed += 1;
    kept.add(index);
  }
  let truncated = 0;
  const bounded = failures.map((failure, index) => {
    if (kept.has(index)) return failure;
    if (bytes(failure) > 0 || index >= DETAILED_FAILURES) truncated += 1;
    return {
      nodeId: failure.nodeId,
      kind: failure.kind,
      message: '',
      location: '',
      traceback: '',
      output: '',
    };
  });
  return { failures: bounded, truncated };
}

const isFatal = (failure: TestFailure) => failure.kind === 'timeout' || failure.kind === 'crashed';
