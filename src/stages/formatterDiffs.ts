import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readBeneath } from '../host/beneath.js';
import { stagingPath } from '../host/stagingPath.js';

// The diffs a formatter gave for files, remembered by what decides them: the formatter and its version, the
// repository's configuration files and each file's path and content. A file the formatter would reformat is
// reformatted again by `--diff` in every build while it stays wrong (boltons, judged by black: two seconds a build);
// an unchanged one's diff is the one it gave before. Kept by the runner in its own cache, per repository, and read by
// nothing of the build's.

export interface DiffPlace {
  cacheDir: string;
  repository: string;
  /** The formatter and version, as the lint stage's summary names them ("black 26.10.1"). */
  formatter: string;
  /** Lint's copy of the checkout (what the formatter read). */
  tree: string;
}

/** What a formatter reads besides the file: black its pyproject.toml, ruff also ruff.toml and .ruff.toml. */
const CONFIGURATION = ['pyproject.toml', 'ruff.toml', '.ruff.toml'];
const MAX_FILE_BYTES = 4 * 1024 * 1024;
const MAX_DIFFS_BYTES = 16 * 1024 * 1024;

function memoryFile(place: DiffPlace): string {
  const key = createHash('sha256')
    .update(`${place.repository}\n${place.formatter}\n`)
    .digest('hex')
    .slice(0, 24);
  return join(place.cacheDir, 'lint-diffs', `${key}.json`);
}

// Each file's diff: remembered ones as they were, the others from `compute` (given only those; undefined when the
// formatter did not run; '' for a file it answered without a diff the report can carry, larger than 4 KiB), then
// remembered for the next build (only this build's files are kept). Such a file is remembered as having none: it
// would otherwise be formatted again in every build. A file `compute` did not answer for is not remembered.
export async function rememberedDiffs(
  place: DiffPlace,
  files: string[],
  compute: (files: string[]) => Promise<Map<string, string> | undefined>,
): Promise<Map<string, string>> {
  const configuration = createHash('sha256');
  for (const name of CONFIGURATION) {
    const bytes = await readBeneath(place.tree, name, MAX_FILE_BYTES);
    configuration.update(`${name} ${bytes ? bytes.length : 'absent'}\n`).update(bytes ?? '');
  }
  const base = configuration.digest('hex');
  const keys = new Map<string, string>();
  for (const file of files) {
    const bytes = await readBeneath(place.tree, file, MAX_FILE_BYTES);
    if (bytes) keys.set(file, createHash('sha256').update(`${base}\n${file}\n`).update(bytes).digest('hex'));
  }
  const target = memoryFile(place);
  let known: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(await readFile(target, 'utf8'));
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed))
      known = parsed as Record<string, unknown>;
  } catch {
    // None yet, or a write that did not finish: every diff is computed.
  }
  const answers = new Map<string, string>();
  const missing: string[] = [];
  for (const file of files) {
    const remembered = known[keys.get(file) ?? ''];
    if (typeof remembered === 'string') answers.set(file, remembered);
    else missing.push(file);
  }
  const computed = missing.length > 0 ? await compute(missing) : undefined;
  for (const file of missing) {
    const diff = computed?.get(file);
    if (diff !== undefined) answers.set(file, diff);
  }
  const kept: Record<string, string> = {};
  for (const [file, diff] of answers) {
    const key = keys.get(file);
    if (key) kept[key] = diff;
  }
  const diffs = new Map([...answers].filter(([, diff]) => diff !== ''));
  const text = JSON.stringify(kept);
  if (computed && text.length <= MAX_DIFFS_BYTES) {
    await mkdir(join(place.cacheDir, 'lint-diffs'), { recursive: true });
    const staging = stagingPath(target);
    await writeFile(staging, text);
    await rename(staging, target);
  }
  return diffs;
}
