import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  chownBeneath,
  PathOutsideError,
  readBeneath,
  TreeTooLargeError,
  typeBeneath,
  walkBeneath,
} from '../../src/host/beneath.js';
import { collectKeptFiles } from '../../src/pipeline/collectKeptFiles.js';
import { checkPluginResults, MAX_FAILED_IDS } from '../../src/stages/pluginResults.js';
import { writeConsoleScripts } from '../../src/stages/projectEnvironment.js';
import { type Canary, makeCanary } from '../support/canary.js';

// Every file under dir, with its bytes, as text (to search for the canary's secret).
async function everything(dir: string): Promise<string> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    const path = join(entry.parentPath, entry.name);
    out.push(path);
    if (entry.isFile()) out.push(await readFile(path, 'utf8'));
  }
  return out.join('\n');
}

describe('the runner never follows a link a build planted', () => {
  let root: string;
  let canary: Canary;
  let before_: string;
  before(async () => {
    canary = await makeCanary();
    before_ = await canary.state();
    root = await mkdtemp(join(tmpdir(), 'ci-runner-beneath-'));
    await mkdir(join(root, 'a', 'b'), { recursive: true });
    await writeFile(join(root, 'a', 'file.txt'), 'mine');
    await writeFile(join(root, 'a', 'b', 'deep.txt'), 'deep');
    await symlink(canary.dir, join(root, 'linked-dir'));
    await symlink(canary.file, join(root, 'a', 'linked-file'));
    execFileSync('mkfifo', [join(root, 'a', 'fifo')]);
  });
  after(async () => {
    assert.equal(await canary.state(), before_, 'the canary kept its content, mode, owner and entries');
    await canary.remove();
    await rm(root, { recursive: true, force: true });
  });

  test('reads a plain file, and nothing through a link at any component, a FIFO or a path that leaves', async () => {
    assert.equal((await readBeneath(root, 'a/file.txt', 1024))?.toString(), 'mine');
    assert.equal(await readBeneath(root, 'linked-dir/secret.txt', 1024), undefined);
    assert.equal(await readBeneath(root, 'a/linked-file', 1024), undefined);
    assert.equal(await readBeneath(root, 'a/fifo', 1024), undefined);
    assert.equal(await readBeneath(root, 'a/file.txt', 2), undefined, 'over maxBytes');
    await assert.rejects(readBeneath(root, 'a/../../etc/passwd', 1024), PathOutsideError);
    assert.equal(await typeBeneath(root, 'linked-dir'), 'other');
    assert.equal(await typeBeneath(root, 'linked-dir/secret.txt'), undefined);
    assert.equal(await typeBeneath(root, 'a/b'), 'directory');
  });

  test('walks the tree by descriptor: links are met, never entered or read', async () => {
    const seen: string[] = [];
    await walkBeneath(root, async (entry) => {
      const bytes = await entry.read();
      seen.push(`${entry.path} ${entry.type}${bytes ? ` ${bytes.toString()}` : ''}`);
    });
    assert.deepEqual(seen, [
      'a directory',
      'a/b directory',
      'a/b/deep.txt file deep',
      'a/fifo other',
      'a/file.txt file mine',
      'a/linked-file other',
      'linked-dir other',
    ]);
    await assert.rejects(
      walkBeneath(root, async () => undefined, { maxEntries: 3 }),
      TreeTooLargeError,
    );
  });

  test('chowns the tree and the links themselves, never what they point to', async () => {
    await chownBeneath(root, 54321, 54321, 1000);
    assert.equal((await lstat(join(root, 'a', 'b', 'deep.txt'))).uid, 54321);
    assert.equal((await lstat(join(root, 'linked-dir'))).uid, 54321);
    assert.equal((await lstat(canary.dir)).uid, process.getuid?.());
    assert.equal((await lstat(canary.file)).uid, process.getuid?.());
  });

  test('kept files: a keep directory replaced by a link, or links inside it, keep nothing of the host', async () => {
    const out = await mkdtemp(join(tmpdir(), 'ci-runner-kept-'));
    try {
      assert.equal(await collectKeptFiles(join(root, 'linked-dir'), join(out, 'one')), 0);
      assert.equal(await collectKeptFiles(root, join(out, 'two')), 2, 'the two plain files only');
      const kept = await everything(out);
      assert.ok(!kept.includes(canary.secret), 'no canary byte kept');
      assert.match(kept, /deep/);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });

  test('a console script named like a link in bin/ is skipped, never written through', async () => {
    const bin = await mkdtemp(join(tmpdir(), 'ci-runner-bin-'));
    try {
      await symlink(canary.file, join(bin, 'python3'));
      const entries = [
        { name: 'python3', module: 'pkg', attr: 'main' },
        { name: 'tool', module: 'pkg', attr: 'main' },
      ];
      assert.deepEqual(await writeConsoleScripts(bin, entries, '/ci/env/bin/python'), ['tool']);
      assert.match(await readFile(join(bin, 'tool'), 'utf8'), /from pkg import main/);
    } finally {
      await rm(bin, { recursive: true, force: true });
    }
  });
});

describe("the plugin's results are checked before the report uses them", () => {
  test('well-formed results pass; anything else is no results', () => {
    const good = { exit_status: 1, ran: 3, collected: 3, failed: ['tests/test_a.py::test_x'] };
    assert.deepEqual(checkPluginResults(good), good);
    assert.equal(checkPluginResults({ ...good, failed: [{ id: 1 }] }), undefined);
    assert.equal(checkPluginResults({ ...good, failed: ['x'.repeat(5000)] }), undefined);
    assert.equal(
      checkPluginResults({ ...good, failed: Array.from({ length: MAX_FAILED_IDS + 1 }, () => 'a::b') }),
      undefined,
    );
    assert.equal(checkPluginResults({ ...good, ran: -1 }), undefined);
    assert.equal(checkPluginResults([good]), undefined);
  });
});
