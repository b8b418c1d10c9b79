import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Queue, UnrecoverableError, Worker } from 'bullmq';
import { Placement } from '../../src/delivery/placement.js';
import { connectRedis } from '../../src/delivery/queue.js';
import { cleanProject, failingTest } from '../support/pythonProject.js';

const run = promisify(execFile);
const CLI = resolve('bin/ci-runner');

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(args: string[], env: Record<string, string> = {}, cwd = process.cwd()): Promise<Outcome> {
  try {
    const { stdout, stderr } = await run(CLI, args, {
      cwd,
      env: { ...process.env, ...env },
      timeout: 300_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

describe('the ci-runner command', () => {
  let root: string;
  let project: string;
  const env = () => ({
    CACHE_DIR: process.env.CI_RUNNER_TEST_CACHE_DIR ?? resolve('.cache/test'),
    ARTEFACT_DIR: join(root, 'artefacts'),
    WORK_DIR: join(root, 'work'),
  });
  const git = (...args: string[]) =>
    execFileSync('git', ['-c', 'user.email=cli@example.invalid', '-c', 'user.name=cli', ...args], {
      cwd: project,
      encoding: 'utf8',
    }).trim();

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'cli-test-'));
    project = join(root, 'project');
    await mkdir(project);
    for (const [path, content] of Object.entries(cleanProject())) {
      await mkdir(dirname(join(project, path)), { recursive: true });
      await writeFile(join(project, path), content);
    }
    git('init', '--quiet', '--initial-branch=main');
    git('add', '--all');
    git('commit', '--quiet', '-m', 'clean');
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test('build on a local working copy: the report as JSON, exit 0 for PASSED', async () => {
    const { code, stdout } = await cli(['build', project, '--json'], env(), root);
    const report = JSON.parse(stdout);
    assert.equal(code, 0, stdout);
    assert.equal(report.status, 'PASSED');
    assert.equal(report.commitSha, git('rev-parse', 'HEAD'));
    assert.equal(report.testsRun, 2);
  });

  test('a second build of a local path is checked out from its object cache (keyed by the path, not the port)', async () => {
    const { stdout } = await cli(['build', project, '--json'], env(), root);
    const checkout = (JSON.parse(stdout) as { stages: Array<{ name: string; summary: string }> }).stages.find(
      (stage) => stage.name === 'checkout',
    );
    assert.match(checkout?.summary ?? '', /, from the object cache\)$/, stdout);
  });

  test('build: exit 1 for FAILED with a readable summary naming the test', async () => {
    for (const [path, content] of Object.entries(failingTest()))
      await writeFile(join(project, path), content);
    git('add', '--all');
    git('commit', '--quiet', '-m', 'failing');
    const { code, stdout } = await cli(['build', project], env(), root);
    assert.equal(code, 1, stdout);
    assert.match(stdout, /^FAILED {2}[0-9a-f]{40}/);
    assert.match(stdout, /failed {5}tests\/test_broken\.py::test_add_is_wrong/);
  });

  test('build: exit 2 for ERRORED when the repository cannot be reached; the summary says only what is true', async () => {
    const { code, stdout } = await cli(
      ['build', 'http://127.0.0.1:9/nothing.git', '--sha', 'e'.repeat(40)],
      { ...env(), CHECKOUT_TIMEOUT_SEC: '5' },
      root,
    );
    assert.equal(code, 2, stdout);
    assert.match(stdout, /^ERRORED {2}e{40} {2}\(\d+\.\d s\)\n/);
    assert.doesNotMatch(stdout, /\(0\.0 s\)/, 'the real duration');
    assert.doesNotMatch(stdout, /coverage/, 'no coverage line when no test ran');
    assert.match(
      stdout,
      /reason {5}checkout: repository http:\/\/127\.0\.0\.1:9\/nothing\.git is unreachable/,
    );
    assert.match(stdout, /checkout {3}errored/);
  });

  test('--help on every command; an unknown command is refused', async () => {
    for (const command of ['build', 'enqueue', 'status', 'serve']) {
      const { code, stdout } = await cli([command, '--help']);
      assert.equal(code, 0);
      assert.match(stdout, new RegExp(`^usage: ci-runner ${command}`));
    }
    const top = await cli(['--help']);
    assert.match(top.stdout, /commands:\n {2}build/);
    const unknown = await cli(['frobnicate']);
    assert.equal(unknown.code, 64);
    assert.equal(unknown.stderr, 'ci-runner: unknown command "frobnicate"; ci-runner --help lists them\n');
  });

  test('build on bad input: one line naming the problem, exit 64 (usage) or 69 (unreachable), never a verdict code', async () => {
    const notGit = join(root, 'not-a-repository');
    await mkdir(notGit, { recursive: true });
    // A repository of another user's: git refuses it for its ownership, and the message says so.
    const foreign = join(root, 'foreign-repository');
    execFileSync('git', ['init', '-q', foreign]);
    execFileSync('chown', ['-R', '65534:65534', foreign]);
    const cases: Array<[string[], number, RegExp]> = [
      [['build', notGit], 64, /is not a git repository \(git init it, or give a repository URL\)/],
      [
        ['build', foreign],
        64,
        /foreign-repository is owned by another user \(git safe\.directory\); run as its owner or add it to safe\.directory/,
      ],
      [
        ['build', join(root, 'no-such-path')],
        64,
        /is neither a local directory nor an http\(s\) repository URL/,
      ],
      [
        ['build', project, '--branch', 'main', '--sha', 'abc'],
        64,
        /--sha must be 40 hex characters, got "abc"/,
      ],
      [['build', 'http://127.0.0.1:9/r.git'], 64, /a repository URL needs --sha or --branch/],
      [
        ['build', 'http://127.0.0.1:9/r.git', '--branch', 'main'],
        69,
        /cannot reach http:\/\/127\.0\.0\.1:9\/r\.git: connect ECONNREFUSED/,
      ],
      [['build', '--shaa', 'x'], 64, /Unknown option '--shaa' \(--help lists the options\)/],
    ];
    for (const [args, code, message] of cases) {
      const outcome = await cli(args, env(), root);
      assert.equal(outcome.code, code, `${args.join(' ')}: ${outcome.stderr}`);
      assert.match(outcome.stderr, message);
      assert.equal(outcome.stderr.trim().split('\n').length, 1, `one line: ${outcome.stderr}`);
      assert.doesNotMatch(outcome.stderr, /\n\s+at /, 'no stack trace');
    }
    const debug = await cli(['build', notGit, '--debug'], env(), root);
    assert.equal(debug.code, 64);
    assert.match(debug.stderr, /\n\s+at /, '--debug adds the stack trace');
  });

  test('a missing branch names the branches there are (exit 64)', async () => {
    const served = spawn(CLI, ['serve', project], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const url = await new Promise<string>((resolveUrl, reject) => {
        served.stdout.on('data', (chunk: Buffer) => {
          const match = /at (http\S+)/.exec(chunk.toString());
          if (match?.[1]) resolveUrl(match[1]);
        });
        served.once('exit', () => reject(new Error('serve exited')));
      });
      const outcome = await cli(['build', url, '--branch', 'nosuch'], env(), root);
      assert.equal(outcome.code, 64, outcome.stderr);
      assert.match(outcome.stderr, /branch nosuch not found at .* \(it has: main\)/);
    } finally {
      served.kill('SIGTERM');
    }
  });

  test('build keeps caches and artefacts in the XDG directories, not where it is run', async () => {
    const home = join(root, 'home');
    const cwd = join(root, 'elsewhere');
    await mkdir(cwd, { recursive: true });
    const xdg = {
      XDG_CACHE_HOME: join(home, 'cache'),
      XDG_DATA_HOME: join(home, 'data'),
      WORK_DIR: join(root, 'work'),
    };
    const { code, stdout } = await cli(['build', project, '--json'], xdg, cwd);
    assert.ok(code === 0 || code === 1, stdout);
    const report = JSON.parse(stdout);
    assert.ok(report.artefactUrl.startsWith(`file://${join(home, 'data', 'ci-runner', 'artefacts')}/`));
    assert.ok((await readdir(join(home, 'cache', 'ci-runner'))).length > 0, 'caches under XDG_CACHE_HOME');
    assert.deepEqual(await readdir(cwd), [], 'nothing written where the command ran');
  });

  test('enqueue refuses what the bridge would dead-letter, at once, with one line and exit 64', async () => {
    const base = ['enqueue', '--repo', 'http://127.0.0.1:9/r.git', '--branch', 'main'];
    const badSha = await cli([...base, '--sha', 'not-a-sha'], { KAFKA_BROKERS: '127.0.0.1:9' });
    assert.equal(badSha.code, 64);
    assert.equal(
      badSha.stderr,
      'ci-runner enqueue: the bridge would dead-letter this CommitResult: commit_sha "not-a-sha" is not 40 hex characters\n',
    );
    const badTimeout = await cli([...base, '--sha', 'a'.repeat(40), '--timeout', 'soon'], {
      KAFKA_BROKERS: '127.0.0.1:9',
    });
    assert.equal(badTimeout.code, 64);
    assert.match(
      badTimeout.stderr,
      /^ci-runner enqueue: --timeout must be a positive number of seconds, got "soon"\n$/,
    );
  });

  test('status shows the queue by state and the latest builds', async () => {
    const queueName = `cli-status-${Date.now()}`;
    const redis = connectRedis(process.env.REDIS_URL ?? 'redis://127.0.0.1:16379');
    const queue = new Queue(queueName, { connection: redis });
    // One build that ended ERRORED (failed the way the worker fails it), then one waiting.
    const errored = 'e'.repeat(40);
    await queue.add('build', { commitSha: errored }, { jobId: `build-${errored}` });
    const workerRedis = connectRedis(process.env.REDIS_URL ?? 'redis://127.0.0.1:16379');
    const worker = new Worker(
      queueName,
      async () => {
        throw new UnrecoverableError('ERRORED: checkout: repository unreachable');
      },
      { connection: workerRedis },
    );
    await new Promise((done) => worker.once('failed', done));
    await worker.close();
    workerRedis.disconnect();
    await queue.add('build', { commitSha: 'f'.repeat(40) }, { jobId: `build-${'f'.repeat(40)}` });
    // Two worker processes on one host and one on another said they are alive.
    const placement = new Placement(redis, queueName);
    await placement.heartbeat('host-a', 'p1', 1);
    await placement.heartbeat('host-a', 'p2', 2);
    await placement.heartbeat('host-b', 'p3', 0);
    try {
      const { code, stdout } = await cli(['status'], { QUEUE_NAME: queueName });
      assert.equal(code, 0, stdout);
      assert.match(
        stdout,
        new RegExp(`queue ${queueName}: waiting 1, active 0, delayed 0, failed 1, completed 0`),
      );
      assert.match(stdout, /workers connected: 0/);
      assert.match(stdout, /worker hosts: host-a \(3 free\), host-b \(0 free\)/);
      assert.match(stdout, new RegExp(`${'f'.repeat(40)} {2}waiting`));
      assert.match(stdout, new RegExp(`${errored} {2}failed {4}ERRORED`), 'the verdict of an ERRORED build');
    } finally {
      await queue.obliterate({ force: true });
      await redis.del(`ci-runner:${queueName}:hosts`);
      await queue.close();
      redis.disconnect();
    }
  });

  test('serve: a local repository over smart HTTP, a build of it by URL, nothing beside it served', async () => {
    execFileSync('git', ['init', '--quiet', '--bare', join(root, 'neighbour.git')]);
    const server = spawn(CLI, ['serve', project], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const url = await new Promise<string>((resolveUrl, reject) => {
        let output = '';
        server.stdout.on('data', (chunk: Buffer) => {
          output += chunk.toString();
          const match = /^serving \S+ at (\S+)\n/.exec(output);
          if (match?.[1]) resolveUrl(match[1]);
        });
        server.once('exit', (code) => reject(new Error(`serve exited ${code}: ${output}`)));
      });
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/project\/\.git$/);
      const head = git('rev-parse', 'HEAD');
      const built = await cli(['build', url, '--sha', head, '--branch', 'main', '--json'], env(), root);
      assert.equal(JSON.parse(built.stdout).commitSha, head);
      assert.notEqual(JSON.parse(built.stdout).status, 'ERRORED', built.stdout);
      const neighbour = url.replace(/project\/\.git$/, 'neighbour.git');
      await assert.rejects(run('git', ['ls-remote', neighbour]), /not found|404/);
      const exited = new Promise((resolveExit) => server.once('exit', resolveExit));
      server.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      server.kill('SIGKILL');
    }
  });
});
