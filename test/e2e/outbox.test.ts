import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import type { BuildReport } from '../../src/delivery/contracts.js';
import { connectPublisher, ensureTopics, type Publisher } from '../../src/delivery/kafka.js';
import { connectRedis, RETENTION_SECONDS } from '../../src/delivery/queue.js';
import { ReportOutbox } from '../../src/delivery/reportOutbox.js';
import { ReportStore } from '../../src/delivery/reportStore.js';
import { createTestSpace, type TestSpace, testLogger } from '../support/harness.js';
import { collectReports, type ReportCollector } from '../support/reportCollector.js';

const report = (commitSha: string): BuildReport => ({
  commitSha,
  status: 'PASSED',
  failedTests: [],
  lintErrors: [],
  lineCoverage: 100,
  artefactUrl: '',
  taskId: 't',
  branchName: 'main',
  repositoryUrl: 'http://example.invalid/r.git',
  error: '',
  stages: [],
  artefactSha256: '',
  durationMs: 1,
  testsRun: 1,
  attempt: 1,
  sandbox: '',
  pythonVersion: '3.11',
  republished: false,
  flakyTests: [],
  supersededBy: '',
  testsSelected: 3,
  testsTotal: 10,
  artefactLink: '',
  workerHost: '',
  warm: false,
});

// Several workers flush the one outbox in Redis at once (every worker flushes when any build finishes): each entry
// is published by one of them, once.
describe('the report outbox: one publisher per entry at a time', () => {
  let space: TestSpace;
  let redis: Redis;
  let publishers: Publisher[];
  let reports: ReportCollector;
  const logger = testLogger('outbox');

  before(async () => {
    space = await createTestSpace();
    const { config } = space;
    await ensureTopics(config.kafkaBrokers, [config.topicBuildReports], logger);
    redis = connectRedis(config.redisUrl);
    publishers = await Promise.all(
      [1, 2, 3].map((n) => connectPublisher(config.kafkaBrokers, `outbox-test-${n}`, logger)),
    );
    reports = await collectReports(config.kafkaBrokers, config.topicBuildReports, logger);
  });

  after(async () => {
    await Promise.all([reports?.close(), ...(publishers ?? []).map((p) => p.close())]);
    redis?.disconnect();
    await space?.cleanup();
  });

  test('three workers flushing together publish each report exactly once', async () => {
    const { config } = space;
    const store = new ReportStore(redis, config.queueName, RETENTION_SECONDS);
    const shas = Array.from({ length: 20 }, (_, i) => i.toString(16).padStart(40, 'a'));
    for (const sha of shas) await store.record(report(sha));
    const outboxes = publishers.map(
      (publisher) => new ReportOutbox(store, publisher, config.topicBuildReports, logger),
    );
    await Promise.all(outboxes.map((outbox) => outbox.flush()));
    await Promise.all(outboxes.map((outbox) => outbox.flush()));
    await Promise.all(shas.map((sha) => reports.waitFor(sha, 30_000)));
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    assert.deepEqual(
      shas.map((sha) => reports.received(sha).length),
      shas.map(() => 1),
      'each report published once',
    );
    assert.equal(await store.backlog(), 0, 'the outbox is empty');
  });
});
