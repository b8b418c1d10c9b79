import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { after, before, describe, test } from 'node:test';
import { Queue } from 'bullmq';
import { buildJobId, connectRedis } from '../../src/delivery/queue.js';
import type { RunningWorker } from '../../src/worker/worker.js';
import type { FixtureRepo } from '../support/fixtureRepo.js';
import { createPipelineHarness, type PipelineHarness } from '../support/pipelineHarness.js';
import { cleanProject } from '../support/pythonProject.js';
import { createRunnerHarness, type RunnerHarness } from '../support/runnerHarness.js';
import { scrapedValue } from '../support/scrapedValue.js';

const py = (...lines: string[]) => `${lines.join('\n')}\n`;

// Counts the runs of each named test in the build's own TMPDIR (shared by the build's processes, new per build).
const COUNTER = py(
  'import os',
  'import pathlib',
  '',
  '',
  'def runs(name):',
  '    state = pathlib.Path(os.environ["TMPDIR"]) / "flaky-runs"',
  '    state.mkdir(exist_ok=True)',
  '    counter = state / name',
  '    n = int(counter.read_text()) + 1 if counter.exists() else 1',
  '    counter.write_text(str(n))',
  '    return n',
);

// Fails on its first run only, in every shape a node id takes: a function, a class method, one parameter of a
// parametrised test; one fails on the runs a seeded random schedule says (random.Random(7): runs 1 and 2).
const FLAKY = py(
  'import random',
  '',
  'import pytest',
  '',
  'from tests.counter import runs',
  '',
  'SCHEDULE = random.Random(7)',
  'FAILS = [SCHEDULE.random() < 0.5 for _ in range(10)]',
  '',
  '',
  '@pytest.mark.fast',
  'def test_first_run_fails():',
  '    assert runs("first") > 1',
  '',
  '',
  '@pytest.mark.fast',
  'class TestGroup:',
  '    def test_in_class(self):',
  '        assert runs("class") > 1',
  '',
  '',
  '@pytest.mark.fast',
  '@pytest.mark.parametrize("n", [1, 2])',
  'def test_param(n):',
  '    assert n == 1 or runs(f"param{n}") > 1',
  '',
  '',
  '@pytest.mark.fast',
  'def test_seeded_schedule():',
  '    assert not FAILS[runs("seeded") - 1]',
);

const ALWAYS = py(
  'import pytest',
  '',
  '',
  '@pytest.mark.fast',
  'def test_always_fails():',
  '    assert 1 == 2',
);

const FLAKY_IDS = [
  'tests/test_flaky.py::TestGroup::test_in_class',
  'tests/test_flaky.py::test_first_run_fails',
  'tests/test_flaky.py::test_param[2]',
  'tests/test_flaky.py::test_seeded_schedule',
];

const files = (extra: Record<string, string> = {}) => ({
  ...cleanProject(),
  'tests/__init__.py': '',
  'tests/counter.py': COUNTER,
  'tests/test_flaky.py': FLAKY,
  ...extra,
});

describe('flaky tests: failed, then passed on a re-run of the same build', () => {
  let harness: PipelineHarness;
  before(async () => {
    harness = await createPipelineHarness();
  });
  after(async () => {
    await harness.close();
  });

  const project = async (name: string, tree: Record<string, string>): Promise<[FixtureRepo, string]> => {
    const repo = await harness.newRepo(name);
    const sha = await repo.commit(tree, name);
    repo.push('main');
    return [repo, sha];
  };
  const flakyIds = (report: { flakyTests: Array<{ nodeId: string }> }) =>
    report.flakyTests.map((flaky) => flaky.nodeId).sort();

  test('a build whose only failures passed on a re-run is PASSED, each flaky test named', async () => {
    const [repo, sha] = await project('flaky-only', files());
    const report = await harness.build(repo, sha);
    assert.equal(report.status, 'PASSED', `${report.error} ${report.lintErrors}`);
    assert.deepEqual(report.failedTests, []);
    assert.deepEqual(flakyIds(report), FLAKY_IDS);
    assert.ok(report.flakyTests.every((flaky) => flaky.flips === 1));
    // The seeded one failed on the first re-run too, and passed on the second.
    assert.ok(
      harness.lastLog.some((line) => line.includes('test_seeded_schedule failed, then passed on re-run 2')),
    );
    assert.equal(report.testsRun, 7);
    const stage = report.stages.find((s) => s.name === 'test');
    assert.match(stage?.summary ?? '', /4 flaky \(passed on a re-run\)/);
  });

  test('a test that always fails stays failed, beside the flaky ones: FAILED', async () => {
    const [repo, sha] = await project('flaky-and-broken', files({ 'tests/test_always.py': ALWAYS }));
    const report = await harness.build(repo, sha);
    assert.equal(report.status, 'FAILED');
    assert.deepEqual(report.failedTests, ['tests/test_always.py::test_always_fails']);
    assert.deepEqual(flakyIds(report), FLAKY_IDS);
    assert.match(report.error, /test: 1 test\(s\) failed; 4 flaky \(passed on a re-run\)/);
  });

  test('FLAKY_RERUNS=0, or a repository lowering it to 0, re-runs nothing: every failure stays', async () => {
    const [repo, sha] = await project('no-reruns', files());
    const off = await harness.build(repo, sha, { flakyReruns: 0 });
    assert.equal(off.status, 'FAILED');
    assert.equal(off.failedTests.length, 4);
    assert.deepEqual(off.flakyTests, []);

    const pyproject = `${cleanProject()['pyproject.toml']}\n[tool.ci-runner]\nflaky-reruns = 0\n`;
    const [lowered, loweredSha] = await project('repo-no-reruns', files({ 'pyproject.toml': pyproject }));
    const report = await harness.build(lowered, loweredSha);
    assert.equal(report.status, 'FAILED');
    assert.deepEqual(report.flakyTests, []);
    assert.ok(!harness.lastLog.some((line) => line.includes('re-run 1')));
  });

  test('one re-run only: the seeded test, which needs two, stays failed', async () => {
    const pyproject = `${cleanProject()['pyproject.toml']}\n[tool.ci-runner]\nflaky-reruns = 1\n`;
    const [repo, sha] = await project('one-rerun', files({ 'pyproject.toml': pyproject }));
    const report = await harness.build(repo, sha);
    assert.deepEqual(report.failedTests, ['tests/test_flaky.py::test_seeded_schedule']);
    assert.equal(report.flakyTests.length, 3);
  });

  test('a collection error is never re-run', async () => {
    const [repo, sha] = await project(
      'collection',
      files({ 'tests/test_broken.py': 'import no_such_module\n' }),
    );
    const report = await harness.build(repo, sha);
    assert.equal(report.status, 'FAILED');
    assert.deepEqual(report.failedTests, ['tests/test_broken.py']);
    assert.deepEqual(report.flakyTests, []);
    assert.ok(!harness.lastLog.some((line) => line.includes('re-run 1')));
  });
});

describe("flaky tests' history: flips per repository in Redis, the metric and the job log", () => {
  let harness: RunnerHarness;
  let worker: RunningWorker;
  before(async () => {
    harness = await createRunnerHarness('flaky');
    await harness.startBridge();
    worker = await harness.startWorker();
  });
  after(async () => {
    await harness?.close();
  });

  test('each build in which a test flips counts once more, and the report on Kafka says how often', async () => {
    const repo = await harness.newRepo('history');
    const first = await repo.commit(files(), 'flaky');
    repo.push('main');
    await harness.announce({ sha: first, repositoryUrl: repo.url, branch: 'main' });
    const one = await harness.reports.waitFor(first);
    assert.equal(one.status, 'PASSED', one.error);
    assert.deepEqual(
      one.flakyTests.map((flaky) => [flaky.nodeId, flaky.flips]).sort(),
      FLAKY_IDS.map((id) => [id, 1]),
    );

    const second = await repo.commit({ 'README.md': 'again\n' }, 'again');
    repo.push('main');
    await harness.announce({ sha: second, repositoryUrl: repo.url, branch: 'main' });
    const two = await harness.reports.waitFor(second);
    // The second build of the repository found its objects and environment in this host's caches; the first could
    // not have its objects.
    assert.equal(one.workerHost, hostname());
    assert.equal(one.warm, false);
    assert.equal(two.warm, true);
    assert.deepEqual(
      two.flakyTests.map((flaky) => [flaky.nodeId, flaky.flips]).sort(),
      FLAKY_IDS.map((id) => [id, 2]),
    );

    // Another repository with the same test ids has a history of its own.
    const other = await harness.newRepo('history-other');
    const third = await other.commit(files(), 'flaky elsewhere');
    other.push('main');
    await harness.announce({ sha: third, repositoryUrl: other.url, branch: 'main' });
    const elsewhere = await harness.reports.waitFor(third);
    assert.ok(elsewhere.flakyTests.every((flaky) => flaky.flips === 1));

    const metrics = await (await fetch(`${worker.metricsUrl}/metrics`)).text();
    assert.equal(scrapedValue(metrics, 'ci_flaky_tests_total'), 12);

    // On-call reads it in the job's log on the board.
    const redis = connectRedis(harness.space.config.redis.url);
    const queue = new Queue(harness.space.config.queueName, { connection: redis });
    try {
      const { logs } = await queue.getJobLogs(buildJobId(second));
      assert.ok(
        logs.includes(`ran warm on host ${hostname()} (git objects and environment cached)`),
        logs.join('\n'),
      );
      const line =
        'flaky: tests/test_flaky.py::test_first_run_fails failed, then passed on a re-run (it did so in 2';
      assert.ok(
        logs.some((entry) => entry.startsWith(line)),
        logs.join('\n'),
      );
    } finally {
      await queue.close();
      redis.disconnect();
    }
  });
});
