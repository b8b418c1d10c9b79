import { readBeneath } from '../host/beneath.js';

const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;

// Reads a file a build wrote, as the runner: `relative` under `root` (a directory the runner made), never through a
// link at any component, never a FIFO or device, never more than maxBytes. Undefined when it is missing, not a
// regular file, or too large, so a build cannot make the runner read (or hang on) anything but its own output.
export function readBuildFile(
  root: string,
  relative: string,
  maxBytes = DEFAULT_MAX_BYTES,
): Promise<Buffer | undefined> {
  return readBeneath(root, relative, maxBytes);
}

/** The most JSON the runner parses from a build's tools (a report the tools could write is far smaller). */
const MAX_JSON_BYTES = 16 * 1024 * 1024;

// Parses a JSON report a build's tool wrote; undefined when it is absent, larger than maxBytes or not JSON (its
// content is never echoed, so a report cannot carry what a hostile build pointed it at).
export async function readBuildJson<T>(
  root: string,
  relative: string,
  maxBytes = MAX_JSON_BYTES,
): Promise<T | undefined> {
  return parseBuildJson<T>(await readBuildFile(root, relative, maxBytes));
}

// The JSON in bytes a build's tool wrote, or undefined when there are none or they are not JSON.
export function parseBuildJson<T>(bytes: Buffer | undefined): T | undefined {
  if (!bytes) return undefined;
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch {
    return undefined;
  }
}
