import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startGitServer } from '../../src/git/gitServer.js';
import { CiError } from '../../src/ops/errors.js';
import { run as checkout, type GitCredentials } from '../../src/stages/checkout.js';
import { createFixtureRepo, forcePushFeature } from '../support/fixtureRepo.js';
import { stageContext } from '../support/harness.js';
import { type StockGitServer, startNginxFcgiwrap, startPythonCgi } from '../support/stockGitServers.js';

// Every kind of git server a user may point the runner at, each real and started here, each asked for the same
// cases. The table of outcomes is printed at the end (it goes into the closing note of issue 9).
const AUTH = { username: 'agent', password: 'right-password' };

interface ServerKind {
  name: string;
  start(served: string): Promise<StockGitServer>;
  /** Credentials the server wants; undefined when it has no authentication. */
  auth?: typeof AUTH;
  /** True when the server sends only commits at a ref's tip (the runner must deepen the branch instead). */
  tipsOnly?: boolean;
}

const SERVERS: ServerKind[] = [
  {
    name: 'project server (git http-backend, tips only, basic auth)',
    start: (served) => startGitServer(served, { auth: AUTH, tipsOnly: true }),
    auth: AUTH,
    tipsOnly: true,
  },
  { name: 'python http.server --cgi (no de-chunking)', start: startPythonCgi },
  {
    name: 'nginx + fcgiwrap (basic auth)',
    start: (served) => startNginxFcgiwrap(served, AUTH),
    auth: AUTH,
  },
];

const table: string[][] = [];

describe('checkout against real git servers', () => {
  let root: string;
  let served: string;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'interop-'));
    served = join(root, 'served');
    await mkdir(served);
    // Python's CGI handler runs git as nobody: the repositories must be world-readable.
    await chmod(root, 0o755);
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
    console.log(
      ['server | case | outcome', '--- | --- | ---', ...table.map((row) => row.join(' | '))].join('\n'),
    );
  });

  for (const [index, kind] of SERVERS.entries()) {
    describe(kind.name, () => {
      let server: StockGitServer;
      let cacheDir: string;
      const credentials: GitCredentials | undefined = kind.auth && { ...kind.auth, hosts: [] };

      before(async () => {
        server = await kind.start(served);
        cacheDir = join(root, `cache-${index}`);
      });
      after(() => server.close());

      const record = (name: string, outcome: string) => table.push([kind.name, name, outcome]);

      const build = async (url: string, sha: string, branch: string, options: { password?: string } = {}) => {
        const dir = await mkdtemp(join(root, 'build-'));
        const lines: string[] = [];
        const result = await checkout(
          {
            repositoryUrl: url,
            commitSha: sha,
            branchName: branch,
            dir,
            cacheDir,
            credentials: credentials && {
              ...credentials,
              password: options.password ?? credentials.password,
            },
            timeoutMs: 20_000,
          },
          stageContext('interop', root, lines),
        );
        return { dir, result, lines };
      };

      const failure = async (work: Promise<unknown>): Promise<CiError> => {
        try {
          await work;
        } catch (error) {
          assert.ok(error instanceof CiError, String(error));
          return error;
        }
        assert.fail('the checkout succeeded');
      };

      const repo = async (name: string) => createFixtureRepo(served, server.baseUrl, `${name}-${index}`);

      test('the branch tip', async () => {
        const fixture = await repo('tip');
        const sha = await fixture.commit({ 'a.txt': 'tip\n' }, 'tip');
        fixture.push('main');
        const { dir, result } = await build(fixture.url, sha, 'main');
        assert.equal(result.outcome, 'passed');
        assert.equal(await readFile(join(dir, 'a.txt'), 'utf8'), 'tip\n');
        record('tip', `passed: ${result.summary}`);
      });

      test('a sha that is not the tip, never fetched before', async () => {
        const fixture = await repo('older');
        const older = await fixture.commit({ 'a.txt': 'older\n' }, 'older');
        await fixture.commit({ 'a.txt': 'newer\n' }, 'newer');
        await fixture.commit({ 'a.txt': 'newest\n' }, 'newest');
        fixture.push('main');
        const { dir, result, lines } = await build(fixture.url, older, 'main');
        assert.equal(result.outcome, 'passed');
        assert.equal(await readFile(join(dir, 'a.txt'), 'utf8'), 'older\n');
        const deepened = lines.find((line) => line.startsWith('fetched branch main 64 commits deep'));
        if (kind.tipsOnly) {
          assert.ok(
            lines.some((line) => line.includes(`would not send ${older} by sha: `)),
            lines.join('\n'),
          );
          assert.ok(deepened, lines.join('\n'));
        } else {
          assert.equal(deepened, undefined, 'fetched by sha');
        }
        record('non-tip sha', `passed${deepened ? ` (${deepened})` : ' (fetched by sha)'}`);
      });

      test('a force-pushed branch: its new tip builds; the sha pushed away is COMMIT_MISSING at once, not retried', async () => {
        const fixture = await repo('forced');
        const { lost, replaced } = await forcePushFeature(fixture);
        const { dir, result } = await build(fixture.url, replaced, 'feature');
        assert.equal(result.outcome, 'passed');
        assert.equal(await readFile(join(dir, 'v.txt'), 'utf8'), 'replaced\n');
        const error = await failure(build(fixture.url, lost, 'feature'));
        assert.equal(error.code, 'COMMIT_MISSING');
        assert.equal(error.retriable, false);
        assert.match(error.message, /not on the server \(force-pushed away\?\)/);
        assert.match(error.message, /not in the history of branch feature, and the server answered "[^"]+"/);
        record('force-pushed', `new tip passed; lost sha ${error.code} (not retried): ${error.message}`);
      });

      test('a wrong password: not retried, the reason names the 401', async (t) => {
        if (!kind.auth) {
          record('wrong password', 'n/a: the server has no authentication');
          t.diagnostic('server without authentication');
          return;
        }
        const fixture = await repo('private');
        const sha = await fixture.commit({ 'p.txt': 'p\n' }, 'private');
        fixture.push('main');
        const error = await failure(build(fixture.url, sha, 'main', { password: 'wrong-password' }));
        assert.equal(error.code, 'REPO_REFUSED');
        assert.equal(error.retriable, false);
        assert.match(error.message, /the server answered 401 Unauthorized/);
        assert.ok(!error.message.includes('wrong-password'));
        record('wrong password', `${error.code} (not retried): ${error.message}`);
      });

      test('a repository that is not there: not retried, the reason names the 404', async () => {
        // Python's CGI handler answers "200 Script output follows" and passes the script's 404 on as a header.
        const error = await failure(build(`${server.baseUrl}absent.git`, 'a'.repeat(40), 'main'));
        assert.equal(error.code, 'REPO_REFUSED');
        assert.match(error.message, /no repository at http:\/\/[^ ]+\/absent\.git \(HTTP 404\)/);
        record('no such repository', `${error.code} (not retried): ${error.message}`);
      });

      test('the server is down: retried, the reason says unreachable', async () => {
        const fixture = await repo('down');
        const sha = await fixture.commit({ 'd.txt': 'd\n' }, 'down');
        fixture.push('main');
        if (server.stopBackend) {
          await server.stopBackend();
          const error = await failure(build(fixture.url, sha, 'main'));
          assert.equal(error.code, 'REPO_UNREACHABLE');
          assert.equal(error.retriable, true);
          assert.match(error.message, /the server answered 502 Bad Gateway/);
          record('backend down', `${error.code} (retried): ${error.message}`);
        }
        await server.close();
        const error = await failure(build(fixture.url, sha, 'main'));
        assert.equal(error.code, 'REPO_UNREACHABLE');
        assert.equal(error.retriable, true);
        assert.match(error.message, /is unreachable: .*ECONNREFUSED/);
        record('server down', `${error.code} (retried): ${error.message}`);
      });
    });
  }

  test('a repository that moved (301 on the ref advertisement): the fetch follows it, as git does', async () => {
    const server = await startGitServer(served, { movedFrom: '/moved/' });
    try {
      const fixture = await createFixtureRepo(served, `${server.baseUrl}moved/`, 'relocated');
      const sha = await fixture.commit({ 'r.txt': 'relocated\n' }, 'relocated');
      fixture.push('main');
      const dir = await mkdtemp(join(root, 'build-'));
      const result = await checkout(
        {
          repositoryUrl: fixture.url,
          commitSha: sha,
          branchName: 'main',
          dir,
          cacheDir: join(root, 'moved'),
          timeoutMs: 20_000,
        },
        stageContext('interop', root),
      );
      assert.equal(result.outcome, 'passed');
      assert.equal(await readFile(join(dir, 'r.txt'), 'utf8'), 'relocated\n');
      table.push(['project server', '301 moved repository', 'passed']);
    } finally {
      await server.close();
    }
  });
});
