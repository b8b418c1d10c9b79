import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import type { RunningBridge } from '../../src/bridge/bridge.js';
import { decodeBuildReport } from '../../src/delivery/contracts.js';
import { buildJobId, connectRedis } from '../../src/delivery/queue.js';
import type { RunningWorker } from '../../src/worker/worker.js';
import type { FixtureRepo } from '../support/fixtureRepo.js';
import type { TestSpace } from '../support/harness.js';
import { cleanProject, failingTest } from '../support/pythonProject.js';
import { readArtefact } from '../support/readArtefact.js';
import type { ReportCollector } from '../support/reportCollector.js';
import { createRunnerHarness, type RunnerHarness } from '../support/runnerHarness.js';

describe('a CommitResult on Kafka becomes a BuildReport on Kafka', () => {
  let harness: RunnerHarness;
  let space: TestSpace;
  let reports: ReportCollector;
  let bridge: RunningBridge;
  let worker: RunningWorker;
  const redis = connectRedis(process.env.REDIS_URL ?? 'redis://127.0.0.1:16379');
  const newRepo = (name: string) => harness.newRepo(name);
  const announce = (repo: FixtureRepo, sha: string, branch: string, status = 'SUCCESS') =>
    harness.announce({ sha, repositoryUrl: repo.url, branch, status });

  before(async () => {
    harness = await createRunnerHarness('e2e');
    ({ space, reports } = harness);
    bridge = await harness.startBridge();
    worker = await harness.startWorker();
  });

  after(async () => {
    await harness?.close();
    redis.disconnect();
  });

  test('clean lint and passing fast tests: PASSED with coverage and an artefact of that commit', async () => {
    const repo = await newRepo('clean');
    const sha = await repo.commit(cleanProject(), 'clean project');
    repo.push('main');
    await announce(repo, sha, 'main');
    const report = await reports.waitFor(sha);

    assert.equal(report.status, 'PASSED', report.error);
    assert.equal(report.commitSha, sha);
    assert.equal(report.taskId, `task-${sha.slice(0, 6)}`);
    assert.deepEqual(report.failedTests, []);
    assert.deepEqual(report.lintErrors, []);
    assert.equal(report.testsRun, 2);
    assert.ok(report.lineCoverage > 0 && report.lineCoverage <= 100, `coverage ${report.lineCoverage}`);
    assert.deepEqual(
      reports.received(sha).map((r) => r.key),
      [sha],
      'one report, keyed by the commit sha',
    );

    const artefactPath = fileURLToPath(report.artefactUrl);
    assert.match(report.artefactSha256, /^[0-9a-f]{64}$/);
    assert.equal(
      artefactPath,
      join(space.config.artefactDir, `${sha}.${report.artefactSha256.slice(0, 16)}.tar.gz`),
    );
    assert.equal(
      createHash('sha256')
        .update(await readFile(artefactPath))
        .digest('hex'),
      report.artefactSha256,
    );
    const entries = await readArtefact(artefactPath);
    assert.equal(entries.get('source/calc/__init__.py')?.content, cleanProject()['calc/__init__.py']);
    assert.equal(entries.get('source/tests/test_calc.py')?.content, cleanProject()['tests/test_calc.py']);
    assert.ok(entries.has('reports/junit.xml'));
    assert.ok(entries.has('reports/coverage.json'));
    assert.ok(![...entries.keys()].some((name) => name.includes('.git/') || name.endsWith('.git')));
    const job = await new Queue(space.config.queueName, { connection: redis }).getJob(buildJobId(sha));
    assert.equal(await job?.getState(), 'completed');
  });

  test('the same CommitResult delivered again builds nothing and republishes the report, marked as republished', async () => {
    const repo = await newRepo('redelivered');
    const sha = await repo.commit(cleanProject(), 'clean project');
    repo.push('main');
    await announce(repo, sha, 'main');
    await reports.waitFor(sha);
    const queue = new Queue(space.config.queueName, { connection: redis });
    const finishedOn = (await queue.getJob(buildJobId(sha)))?.finishedOn;

    await announce(repo, sha, 'main');
    await reports.waitFor(sha, 60_000, 2);

    const [first, second] = reports.received(sha);
    assert.ok(first && second);
    assert.equal(second.key, sha);
    const original = decodeBuildReport(first.bytes);
    const again = decodeBuildReport(second.bytes);
    assert.equal(original.republished, false);
    assert.equal(again.republished, true, 'the copy says it is the stored report');
    assert.deepEqual({ ...again, republished: false }, original, 'the same report otherwise');
    const job = await queue.getJob(buildJobId(sha));
    assert.equal(job?.finishedOn, finishedOn, 'not built again');
    assert.equal(job?.attemptsMade, 1);
  });

  test('one failing fast test: FAILED naming exactly that test', async () => {
    const repo = await newRepo('failing');
    await repo.commit(cleanProject(), 'clean project');
    const sha = await repo.commit(failingTest(), 'add a failing test');
    repo.push('main');
    await announce(repo, sha, 'main');
    const report = await reports.waitFor(sha);

    assert.equal(report.status, 'FAILED');
    assert.deepEqual(report.failedTests, ['tests/test_broken.py::test_add_is_wrong']);
    assert.deepEqual(report.lintErrors, []);
    assert.equal(report.testsRun, 3);
  });

  test('lint findings: FAILED with one entry per finding from ruff and black', async () => {
    const repo = await newRepo('lint');
    await repo.commit(cleanProject(), 'clean project');
    repo.push('main');
    const sha = await repo.commit(
      { 'calc/extra.py': 'import os\n\n\ndef triple(x):\n    return x*3\n' },
      'add badly formatted module',
    );
    repo.push('lint');
    await announce(repo, sha, 'lint');
    const report = await reports.waitFor(sha);

    assert.equal(report.status, 'FAILED');
    assert.deepEqual(report.failedTests, []);
    assert.deepEqual(report.lintErrors, [
      'calc/extra.py: would reformat',
      'calc/extra.py:1:8: F401 `os` imported but unused',
    ]);
  });

  test('a commit that is no longer the branch tip builds its own content', async () => {
    const repo = await newRepo('moved');
    await repo.commit(cleanProject(), 'clean project');
    repo.push('main');
    const older = await repo.commit({ ...cleanProject(), 'VERSION.txt': 'older\n' }, 'older');
    const tip = await repo.commit({ ...failingTest(), 'VERSION.txt': 'tip\n' }, 'tip');
    repo.push('feature/tip-moved');
    await announce(repo, older, 'feature/tip-moved');
    const report = await reports.waitFor(older);

    assert.equal(report.status, 'PASSED', report.error);
    assert.equal(report.commitSha, older);
    const entries = await readArtefact(fileURLToPath(report.artefactUrl));
    assert.equal(entries.get('source/VERSION.txt')?.content, 'older\n');
    assert.equal(entries.has('source/tests/test_broken.py'), false);
    assert.notEqual(older, tip);
  });

  test('a CommitResult whose status is not SUCCESS starts no job and gets no report', async () => {
    const repo = await newRepo('skipped');
    const skipped = await repo.commit({ ...cleanProject(), 'VERSION.txt': 'not built\n' }, 'agent gave up');
    const built = await repo.commit({ 'VERSION.txt': 'built\n' }, 'agent succeeded');
    repo.push('main');
    await announce(repo, skipped, 'main', 'FAILURE');
    await announce(repo, built, 'main');
    // Same key space, same partition, handled in order: once the later commit's report is here, the bridge has
    // already decided on the earlier one.
    const report = await reports.waitFor(built);

    assert.equal(report.status, 'PASSED', report.error);
    const queue = new Queue(space.config.queueName, { connection: redis });
    assert.equal(await queue.getJob(buildJobId(skipped)), undefined);
    assert.equal(await queue.getJob(buildJobId(built)).then((job) => job?.id), buildJobId(built));
    assert.deepEqual(reports.received(skipped), []);
  });

  test('metrics, health and readiness tell on-call what happened', async () => {
    const scrape = async (url: string) => {
      const text = await (await fetch(`${url}/metrics`)).text();
      return (name: string) => {
        const line = text.split('\n').find((l) => l.startsWith(`${name} `));
        return line === undefined ? undefined : Number(line.slice(name.length + 1));
      };
    };
    // The suite so far: 4 PASSED builds (one of them delivered twice), 2 FAILED, 1 commit skipped.
    let worker_ = await scrape(worker.metricsUrl);
    // A report can be published (outbox) a moment before its worker counts the build: wait for both.
    const settled = () =>
      (worker_('ci_reports_published_total') ?? 0) >= 7 && (worker_('ci_build_latency_sec_count') ?? 0) >= 6;
    for (let waited = 0; !settled() && waited < 90_000; waited += 250) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      worker_ = await scrape(worker.metricsUrl);
    }
    assert.equal(worker_('ci_build_ok_total'), 4);
    assert.equal(worker_('ci_build_fail_total'), 2);
    assert.equal(worker_('ci_build_errored_total'), 0);
    assert.equal(worker_('ci_build_latency_sec_count'), 6);
    assert.equal(worker_('ci_stage_duration_sec_count{stage="test",outcome="passed"}'), 5);
    assert.equal(worker_('ci_stage_duration_sec_count{stage="test",outcome="failed"}'), 1);
    assert.equal(worker_('ci_reports_published_total'), 7, 'six reports and one republished');
    assert.equal(worker_('ci_reports_unpublished'), 0);
    // Every repository resolves its own environment once (pins are never shared between repositories).
    const envHits = worker_('ci_cache_hits_total{cache="env"}') ?? 0;
    const envMisses = worker_('ci_cache_misses_total{cache="env"}') ?? 0;
    assert.equal(envHits + envMisses, 6, 'every build counted as an environment hit or miss');
    assert.ok(envMisses >= 1);
    assert.equal(worker_('ci_queue_jobs{state="completed"}'), 6);
    assert.ok((worker_('process_resident_memory_bytes') ?? 0) > 0, "Node's default metrics");

    const bridge_ = await scrape(bridge.metricsUrl);
    assert.equal(bridge_('ci_bridge_messages_total{outcome="enqueued"}'), 6);
    assert.equal(bridge_('ci_bridge_messages_total{outcome="republished"}'), 1);
    assert.equal(bridge_('ci_bridge_messages_total{outcome="skipped"}'), 1);
    assert.equal(bridge_('ci_bridge_consumer_lag'), 0);

    // Every metric the shipped dashboard and alert rules use exists in a real scrape.
    const exposed = `${await (await fetch(`${worker.metricsUrl}/metrics`)).text()}${await (await fetch(`${bridge.metricsUrl}/metrics`)).text()}`;
    const shipped = `${await readFile('deploy/grafana-dashboard.json', 'utf8')}${await readFile('deploy/prometheus-alerts.yml', 'utf8')}`;
    const used = new Set(
      [...shipped.matchAll(/\bci_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|count|sum)$/, '')),
    );
    assert.ok(used.size >= 10, `${used.size} metrics used`);
    for (const name of used) assert.match(exposed, new RegExp(`# TYPE ${name} `), `${name} is exposed`);

    for (const url of [worker.metricsUrl, bridge.metricsUrl]) {
      assert.equal((await fetch(`${url}/healthz`)).status, 200);
      const ready = await fetch(`${url}/readyz`);
      assert.equal(ready.status, 200);
      assert.deepEqual(await ready.json(), { ready: true, checks: { redis: true, kafka: true } });
    }
  });
});
