import { constants } from 'node:fs';
import { open } from 'node:fs/promises';

const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;

// Reads a file a build wrote, as the runner: never through a symlink, never a FIFO or device, never more than
// maxBytes. Undefined when it is missing, not a regular file, or too large, so a build cannot make the runner read
// (or hang on) anything but its own plain output.
export async function readBuildFile(path: string, maxBytes = DEFAULT_MAX_BYTES): Promise<Buffer | undefined> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(
    () => undefined,
  );
  if (!handle) return undefined;
  try {
    const stat = await handle.stat();
    if (!stat.isFile() || stat.size > maxBytes) return undefined;
    const buffer = Buffer.alloc(stat.size);
    const { bytesRead } = await handle.read(buffer, 0, stat.size, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

// Parses a JSON report a build's tool wrote; undefined when it is absent or not JSON (its content is never echoed,
// so a report cannot carry what a hostile build pointed it at).
export async function readBuildJson<T>(path: string, maxBytes?: number): Promise<T | undefined> {
  const bytes = await readBuildFile(path, maxBytes);
  if (!bytes) return undefined;
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch {
    return undefined;
  }
}
