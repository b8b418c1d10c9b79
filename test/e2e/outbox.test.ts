import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import type { BuildReport } from '../../src/delivery/contracts.js';
import { connectPublisher, type Publisher } from '../../src/delivery/kafka.js';
import { ensureTopics } from '../../src/delivery/kafkaTopics.js';
import { connectRedis, RETENTION_SECONDS } from '../../src/delivery/queue.js';
import { reportLimits } from '../../src/delivery/reportLimits.js';
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
  failedTestsOmitted: 0,
  lintErrorsOmitted: 0,
  failures: [],
  lintFindings: [],
  failuresTruncated: 0,
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
    await ensureTopics(config.kafka.brokers, [config.topicBuildReports], logger);
    redis = connectRedis(config.redis.url);
    publishers = await Promise.all(
      [1, 2, 3].map((n) => connectPublisher(config.kafka.brokers, `outbox-test-${n}`, logger)),
    );
    reports = await collectReports(config.kafka.brokers, config.topicBuildReports, logger);
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

// A report too large for the reports topic is delivered reduced, and never holds back the reports behind it.
describe('reports Kafka cannot take are delivered reduced', () => {
  let space: TestSpace;
  let redis: Redis;
  let publisher: Publisher;
  let reports: ReportCollector;
  let topic: string;
  const logger = testLogger('outbox-size');

  before(async () => {
    space = await createTestSpace();
    const { config } = space;
    // A topic that takes records of at most 20,000 bytes, as an operator's could.
    topic = `${config.topicBuildReports}-small`;
    await ensureTopics(config.kafka.brokers, [topic], logger, { 'max.message.bytes': '20000' });
    redis = connectRedis(config.redis.url);
    publisher = await connectPublisher(config.kafka.brokers, 'outbox-size-test', logger);
    reports = await collectReports(config.kafka.brokers, topic, logger);
  });

  after(async () => {
    await Promise.all([reports?.close(), publisher?.close()]);
    redis?.disconnect();
    await space?.cleanup();
  });

  test('the worker reads the topic limit; 25,000 lint findings go out reduced, and the report behind arrives', async () => {
    const { config } = space;
    const limits = await reportLimits(config.kafka.brokers, topic, 1000, logger);
    assert.deepEqual(limits, { maxEntries: 1000, maxBytes: 20_000 - 1024 });
    // Recorded within the default limits (as a worker that read the broker's default would), so Kafka refuses it.
    const store = new ReportStore(redis, config.queueName, RETENTION_SECONDS);
    const big = 'b'.repeat(40);
    const normal = 'c'.repeat(40);
    const findings = Array.from(
      { length: 25_000 },
      (_, i) => `pkg/imports.py:${i + 1}:8: F401 \`os\` imported but unused`,
    );
    await store.record({
      ...report(big),
      status: 'FAILED',
      lintErrors: findings,
      lineCoverage: 42,
      artefactUrl: 'file:///a.tar.gz',
    });
    await store.record(report(normal));
    const outbox = new ReportOutbox(store, publisher, topic, logger);
    await outbox.flush();
    await outbox.flush();
    const [reduced, behind] = await Promise.all([
      reports.waitFor(big, 30_000),
      reports.waitFor(normal, 30_000),
    ]);
    assert.equal(behind.status, 'PASSED');
    assert.equal(reduced.status, 'FAILED');
    assert.equal(reduced.lineCoverage, 42);
    assert.equal(reduced.artefactUrl, 'file:///a.tar.gz');
    assert.ok(
      reduced.lintErrors.length > 0 && reduced.lintErrors.length < 1000,
      `${reduced.lintErrors.length} kept`,
    );
    assert.equal(reduced.lintErrors.length + reduced.lintErrorsOmitted, 25_000);
    assert.match(reduced.error, /report reduced to fit/);
    assert.match(reduced.error, /lint finding\(s\) left out of this report/);
    assert.deepEqual(await store.get(big), reduced, 'the stored report is the one published');
    assert.equal(await store.backlog(), 0, 'the outbox is empty');
  });
});
