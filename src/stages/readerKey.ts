import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { typeBeneath } from '../host/beneath.js';
import { readBuildFile } from '../pipeline/readBuildFile.js';

// The reader's own code (its script and the modules it imports), hashed once per process (it changes only with the
// runner).
const readerHashes = new Map<string, Promise<string>>();
function readerHash(scripts: string[]): Promise<string> {
  const key = scripts.join('\n');
  let hash = readerHashes.get(key);
  if (!hash) {
    hash = Promise.all(scripts.map((file) => readFile(file))).then((codes) =>
      codes.reduce((digest, code) => digest.update(code), createHash('sha256')).digest('hex'),
    );
    readerHashes.set(key, hash);
  }
  return hash;
}

/** Files whose content the reader's answer depends on (the pyproject and what the lint profile reads). */
const READ_FILES = [
  'pyproject.toml',
  '.pre-commit-config.yaml',
  'ruff.toml',
  '.ruff.toml',
  'requirements-dev.txt',
  'requirements-lint.txt',
  'requirements/dev.txt',
  'requirements/lint.txt',
  'setup.cfg',
];
/** Files whose presence alone it depends on. */
const PRESENT_FILES = ['setup.py'];
const READ_MAX_BYTES = 4 * 1024 * 1024;

// What the reader's answer depends on, per repository: its own code, the bytes of the files it reads and whether
// setup.py exists. Undefined (nothing cached) when any of them, or a directory above one, is there but is
// not a plain file or directory: the reader in the sandbox may see it otherwise.
export async function readerKey(
  src: string,
  scripts: string[],
  repository: string,
): Promise<string | undefined> {
  const hash = createHash('sha256')
    .update(await readerHash(scripts))
    .update(`${repository}\n`);
  for (const name of [...READ_FILES, ...PRESENT_FILES]) {
    // Decided as the host sees each entry itself (lstat), never through a link.
    const parts = name.split('/');
    const above = parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join('/'));
    const types = await Promise.all(above.map((dir) => typeBeneath(src, dir)));
    if (types.some((type) => type !== undefined && type !== 'directory')) return undefined;
    const type = await typeBeneath(src, name);
    if (type === undefined) {
      hash.update(`${name} absent\n`);
      continue;
    }
    if (type !== 'file') return undefined;
    if (PRESENT_FILES.includes(name)) {
      hash.update(`${name} present\n`);
      continue;
    }
    const content = await readBuildFile(src, name, READ_MAX_BYTES);
    if (!content) return undefined;
    hash.update(`${name} ${content.length}\n`).update(content);
  }
  return hash.digest('hex').slice(0, 32);
}
