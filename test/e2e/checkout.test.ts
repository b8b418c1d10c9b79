import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type GitServer, startGitServer } from '../../src/git/gitServer.js';
import { CiError } from '../../src/ops/errors.js';
import { cacheGitdir, run as checkout } from '../../src/stages/checkout.js';
import { benchModule, benchProject } from '../support/benchProject.js';
import { createFixtureRepo, type FixtureRepo, forcePushFeature } from '../support/fixtureRepo.js';
import { stageContext } from '../support/harness.js';

describe('checkout from a persistent object cache', () => {
  let root: string;
  let served: string;
  let git: GitServer;
  let privateGit: GitServer;
  let cacheDir: string;
  const repos: FixtureRepo[] = [];
  const secret = 's3cr3t-token-value';

  const context = (lines: string[] = []) => stageContext('checkout', root, lines);

  const checkoutInto = async (url: string, sha: string, branch = 'main', lines: string[] = []) => {
    const dir = await mkdtemp(join(root, 'build-'));
    const result = await checkout(
      { repositoryUrl: url, commitSha: sha, branchName: branch, dir, cacheDir, timeoutMs: 30_000 },
      context(lines),
    );
    return { dir, result };
  };

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'checkout-test-'));
    served = join(root, 'served');
    cacheDir = join(root, 'cache');
    await mkdir(served);
    git = await startGitServer(served);
    privateGit = await startGitServer(served, { auth: { username: 'agent', password: secret } });
  });

  after(async () => {
    await git.close();
    await privateGit.close();
    await Promise.all(repos.map((repo) => repo.cleanup()));
    await rm(root, { recursive: true, force: true });
  });

  const gitServerUrl = () => git.baseUrl;

  const newRepo = async (name: string) => {
    const repo = await createFixtureRepo(served, git.baseUrl, name);
    repos.push(repo);
    return repo;
  };

  test('writes exactly the commit: modes, symlinks, no .git; a cached commit needs no fetch', async () => {
    const repo = await newRepo('shapes');
    const sha = await repo.commit({ 'run.sh': '#!/bin/sh\necho hi\n', 'pkg/a.py': 'A = 1\n' }, 'files');
    repo.push('main');
    const first: string[] = [];
    const { dir, result } = await checkoutInto(repo.url, sha, 'main', first);
    assert.equal(result.outcome, 'passed');
    assert.deepEqual((await readdir(dir)).sort(), ['pkg', 'run.sh']);
    assert.equal(await readFile(join(dir, 'pkg/a.py'), 'utf8'), 'A = 1\n');
    assert.equal((await lstat(join(dir, 'run.sh'))).mode & 0o777, 0o755);
    assert.ok(first.some((line) => line.startsWith('fetching')));

    const again: string[] = [];
    await checkoutInto(repo.url, sha, 'main', again);
    assert.ok(again.some((line) => line.includes('already in the object cache')));
    assert.ok(!again.some((line) => line.startsWith('fetching')));
  });

  test('symlinks are stored as links, never followed', async () => {
    const repo = await newRepo('links');
    await repo.commit({ 'real.txt': 'x\n' }, 'base');
    const sha = await repo.commit(
      {},
      'links',
      [],
      [
        ['escape', '/etc/passwd'],
        ['near', 'real.txt'],
      ],
    );
    repo.push('main');
    const { dir, result } = await checkoutInto(repo.url, sha);
    assert.equal(result.outcome, 'passed');
    assert.ok((await lstat(join(dir, 'escape'))).isSymbolicLink());
    assert.equal(await readlink(join(dir, 'escape')), '/etc/passwd');
    assert.equal(await readlink(join(dir, 'near')), 'real.txt');
  });

  test('a commit that is not the tip, after the branch moved on, and a new commit fetched into the warm cache', async () => {
    const repo = await newRepo('moving');
    const one = await repo.commit({ 'v.txt': '1\n' }, 'one');
    repo.push('main');
    await checkoutInto(repo.url, one);
    const two = await repo.commit({ 'v.txt': '2\n' }, 'two');
    const three = await repo.commit({ 'v.txt': '3\n' }, 'three');
    repo.push('main');
    const { dir } = await checkoutInto(repo.url, two);
    assert.equal(await readFile(join(dir, 'v.txt'), 'utf8'), '2\n');
    const tip = await checkoutInto(repo.url, three);
    assert.equal(await readFile(join(tip.dir, 'v.txt'), 'utf8'), '3\n');
  });

  test('a new commit fetched into the warm cache transfers only its new objects', async () => {
    const repo = await newRepo('incremental');
    const files: Record<string, string> = {};
    for (let i = 0; i < 40; i += 1) files[`pkg/m${i}.py`] = `X = ${i}\n`;
    const first = await repo.commit(files, 'forty files');
    repo.push('main');
    await checkoutInto(repo.url, first);
    const second = await repo.commit({ 'pkg/m7.py': 'X = "seven"\n' }, 'one file changed');
    repo.push('main');
    const { dir } = await checkoutInto(repo.url, second);
    assert.equal(await readFile(join(dir, 'pkg/m7.py'), 'utf8'), 'X = "seven"\n');
    assert.equal((await readdir(join(dir, 'pkg'))).length, 40);
    const packs = join(cacheGitdir(cacheDir, repo.url), 'objects', 'pack');
    const indexes = (await readdir(packs)).filter((name) => name.endsWith('.idx'));
    // A version-2 pack index is 1072 bytes plus 28 per object. First fetch: 40 blobs, 2 trees, 1 commit.
    // Second: only the commit, the two trees on the changed path and the changed blob.
    const counts = await Promise.all(
      indexes.map(async (name) => ((await stat(join(packs, name))).size - 1072) / 28),
    );
    assert.deepEqual(
      counts.sort((a, b) => a - b),
      [4, 43],
    );
  });

  test('a commit that brings back earlier content is fetched: packs never delta against each other', async () => {
    // Thin packs delta new objects against objects the cache already has; isomorphic-git keeps them thin, and with
    // content that comes back two packs can each hold the other's base: reading an object then never ended (the
    // worker's heap filled up).
    // Which pack is read first depends on the packs' names (hashes): four repositories, so the fault shows.
    for (const name of ['reverts-a', 'reverts-b', 'reverts-c', 'reverts-d']) await revertingHistory(name);
  });

  const revertingHistory = async (name: string) => {
    const repo = await newRepo(name);
    const steps = [
      benchProject(40, 'prime'),
      benchProject(40, 'one'),
      { 'calc/mod0.py': benchModule(0, 1) },
      benchProject(40, 'two'),
    ];
    for (const [n, files] of steps.entries()) {
      const sha = await repo.commit(files, `step ${n}`);
      repo.push('main');
      const { dir, result } = await checkoutInto(repo.url, sha);
      assert.equal(result.outcome, 'passed', `step ${n}`);
      assert.equal(await readFile(join(dir, 'calc/mod0.py'), 'utf8'), benchModule(0, n === 2 ? 1 : 0));
    }
  };

  test('a crafted tree with a path-traversing entry fails the build and writes nothing', async () => {
    const bare = join(served, 'crafted.git');
    const git = (args: string[], input?: Buffer) =>
      execFileSync('git', args, { cwd: bare, input, encoding: 'utf8' }).trim();
    await mkdir(bare);
    git(['init', '--quiet', '--bare', '--initial-branch=main']);
    const blob = git(['hash-object', '-w', '--stdin'], Buffer.from('escaped\n'));
    const entry = (name: string) =>
      Buffer.concat([Buffer.from(`100644 ${name}\0`), Buffer.from(blob, 'hex')]);
    const tree = git(
      ['hash-object', '-w', '-t', 'tree', '--literally', '--stdin'],
      Buffer.concat([entry('..'), entry('ok')]),
    );
    const env = {
      GIT_AUTHOR_NAME: 'x',
      GIT_AUTHOR_EMAIL: 'x@x',
      GIT_COMMITTER_NAME: 'x',
      GIT_COMMITTER_EMAIL: 'x@x',
    };
    const commit = execFileSync('git', ['commit-tree', tree, '-m', 'crafted'], {
      cwd: bare,
      env: { ...process.env, ...env },
      encoding: 'utf8',
    }).trim();
    git(['update-ref', 'refs/heads/main', commit]);

    const { dir, result } = await checkoutInto(`${gitServerUrl()}crafted.git`, commit);
    assert.equal(result.outcome, 'failed');
    assert.match(result.summary, /"\.\." contains unsafe character sequences \(in \/\)/);
    assert.deepEqual(await readdir(dir), []);
  });

  test('a sha force-pushed away before it was fetched: COMMIT_MISSING', async () => {
    const repo = await newRepo('forced');
    const { lost, replaced } = await forcePushFeature(repo);
    assert.notEqual(lost, replaced);
    await assert.rejects(checkoutInto(repo.url, lost, 'feature'), (error: unknown) => {
      assert.ok(error instanceof CiError);
      assert.equal(error.code, 'COMMIT_MISSING');
      assert.equal(error.retriable, false, 'the whole history was fetched: no retry finds it');
      assert.match(error.message, /not on the server \(force-pushed away\?\)/);
      assert.match(error.message, /not in the history of branch feature/);
      assert.match(error.message, /the server answered "[^"]+" when asked for it by sha/);
      return true;
    });
  });

  test('concurrent checkouts of one remote all get their own commit', async () => {
    const repo = await newRepo('busy');
    const shas: string[] = [];
    for (let i = 0; i < 6; i += 1) shas.push(await repo.commit({ 'n.txt': `${i}\n` }, `c${i}`));
    repo.push('main');
    const results = await Promise.all(shas.map((sha) => checkoutInto(repo.url, sha)));
    for (const [i, { dir }] of results.entries()) {
      assert.equal(await readFile(join(dir, 'n.txt'), 'utf8'), `${i}\n`);
    }
  });

  test('private repositories: credentials from configuration, never written or logged', async () => {
    const repo = await createFixtureRepo(served, privateGit.baseUrl, 'private');
    repos.push(repo);
    const sha = await repo.commit({ 'p.txt': 'private\n' }, 'private');
    repo.push('main');
    await assert.rejects(checkoutInto(repo.url, sha), (error: unknown) => {
      assert.ok(error instanceof CiError && error.code === 'REPO_REFUSED' && !error.retriable);
      assert.match(error.message, /the server answered 401 Unauthorized \(credentials missing or wrong/);
      return true;
    });
    const lines: string[] = [];
    const dir = await mkdtemp(join(root, 'build-'));
    const result = await checkout(
      {
        repositoryUrl: repo.url,
        commitSha: sha,
        branchName: 'main',
        dir,
        cacheDir,
        credentials: { username: 'agent', password: secret, hosts: ['127.0.0.1'] },
        timeoutMs: 30_000,
      },
      context(lines),
    );
    assert.equal(result.outcome, 'passed');
    assert.equal(await readFile(join(dir, 'p.txt'), 'utf8'), 'private\n');
    assert.ok(!lines.join('\n').includes(secret));
    const config = await readFile(join(cacheGitdir(cacheDir, repo.url), 'config'), 'utf8');
    assert.ok(!config.includes(secret));
  });

  test('a remote whose default branch does not exist (HEAD names a missing branch) still builds its branches', async () => {
    const repo = await newRepo('headless');
    const sha = await repo.commit({ 'h.txt': 'headless\n' }, 'on a feature branch');
    repo.push('feature');
    execFileSync('git', ['symbolic-ref', 'HEAD', 'refs/heads/gone'], { cwd: join(served, 'headless.git') });
    const { dir, result } = await checkoutInto(repo.url, sha, 'feature');
    assert.equal(result.outcome, 'passed');
    assert.equal(await readFile(join(dir, 'h.txt'), 'utf8'), 'headless\n');
  });
});
