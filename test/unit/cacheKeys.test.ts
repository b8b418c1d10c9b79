import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readerKey } from '../../src/stages/readerKey.js';
import { ancestors } from '../../src/stages/testSelection.js';
import { type Canary, makeCanary } from '../support/canary.js';

const IDENTITY = {
  ...process.env,
  GIT_AUTHOR_NAME: 'Fixture',
  GIT_AUTHOR_EMAIL: 'fixture@example.invalid',
  GIT_COMMITTER_NAME: 'Fixture',
  GIT_COMMITTER_EMAIL: 'fixture@example.invalid',
};

describe("what a build's tree names never reaches another repository's caches", () => {
  let dir: string;
  let canary: Canary;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ci-runner-keys-'));
    canary = await makeCanary();
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
    await canary.remove();
  });

  test('the settings cache is keyed per repository, and nothing is cached for a declaration that is a link', async () => {
    const tree = join(dir, 'tree');
    execFileSync('mkdir', ['-p', tree]);
    const script = join(dir, 'reader.py');
    await writeFile(script, 'print("reader")\n');
    await writeFile(join(tree, 'pyproject.toml'), '[project]\nname = "x"\n');
    const one = await readerKey(tree, [script], 'http://git.example/one.git');
    const two = await readerKey(tree, [script], 'http://git.example/two.git');
    assert.ok(one && two && one !== two, 'two repositories, two keys');
    await symlink(canary.file, join(tree, 'setup.py'));
    assert.equal(
      await readerKey(tree, [script], 'http://git.example/one.git'),
      undefined,
      'setup.py is a link',
    );
  });

  test("a crafted commit's parent that is not a commit id never names a directory", async () => {
    const gitdir = join(dir, 'repo.git');
    execFileSync('git', ['init', '--quiet', '--bare', gitdir]);
    const git = (args: string[], input?: string) =>
      execFileSync('git', ['--git-dir', gitdir, ...args], { input, encoding: 'utf8', env: IDENTITY }).trim();
    const tree = git(['mktree'], '');
    const base = git(['commit-tree', tree, '-m', 'base'], undefined);
    const crafted = [
      `tree ${tree}`,
      `parent ${base}`,
      'parent ../../../../etc/cron.d',
      'author A <a@example.invalid> 1700000000 +0000',
      'committer A <a@example.invalid> 1700000000 +0000',
      '',
      'crafted',
      '',
    ].join('\n');
    const sha = git(['hash-object', '-t', 'commit', '--literally', '-w', '--stdin'], crafted);
    const found: string[] = [];
    for await (const oid of ancestors(gitdir, sha)) found.push(oid);
    assert.deepEqual(found, [base]);
  });
});
