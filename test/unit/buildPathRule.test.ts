import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';

// The rule of src/host/beneath.ts, enforced: no fs call that follows links is made on a directory a build can write
// (its checkout, venv, out/, keep, home/, tmp/, lint's directory, the selection's directory) anywhere else.
const FOLLOWING_CALL =
  /\b(readFile|writeFile|appendFile|readdir|copyFile|cp|stat|lstat|realpath|chown|lchown|mkdir|open|access|rename|symlink|readlink|utimes|pathExists)\((join\()?[^)]*(layout\.(src|venv|out|keep|home|tmp|lint|affected)|buildVenv|srcHost|\.inside\.)/;

/** Calls the rule allows, each made before any process of the build could have written there. */
const ALLOWED = new Map([['src/stages/lint.ts', 'mkdir(join(layout.lint, dir), { recursive: true })']]);

test('no link-following fs call on a build-writable path outside src/host/beneath.ts', async () => {
  const offending: string[] = [];
  for (const entry of await readdir('src', { withFileTypes: true, recursive: true })) {
    const path = join(entry.parentPath, entry.name);
    if (!entry.isFile() || !path.endsWith('.ts') || path === 'src/host/beneath.ts') continue;
    const lines = (await readFile(path, 'utf8')).split('\n');
    lines.forEach((line, index) => {
      if (!FOLLOWING_CALL.test(line)) return;
      if (ALLOWED.has(path) && line.includes(ALLOWED.get(path) as string)) return;
      offending.push(`${path}:${index + 1}: ${line.trim()}`);
    });
  }
  assert.deepEqual(offending, [], 'use readBuildFile / walkBeneath / chownBeneath from src/host/beneath.ts');
});
