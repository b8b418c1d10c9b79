import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { enqueueAndWait } from '../../src/cli/enqueueAndWait.js';
import { type IncomingMessage, type Subscription, subscribe } from '../../src/delivery/kafka.js';
import { type Prometheus, startPrometheus } from '../support/prometheus.js';
import { cleanProject } from '../support/pythonProject.js';
import { createRunnerHarness, type RunnerHarness } from '../support/runnerHarness.js';
import { scrapedValue } from '../support/scrapedValue.js';
import { setTopicConfig } from '../support/setTopicConfig.js';

const DEAD_LETTER_LIMIT = 65_536;
const DEAD_LETTERED = 'ci_bridge_messages_total{outcome="dead_lettered"}';

const waitUntil = async (done: () => boolean, what: string, ms = 60_000) => {
  for (let waited = 0; !done(); waited += 100) {
    if (waited > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
};

describe('no verdict possible, and bad input', () => {
  let harness: RunnerHarness;
  let dlq: Subscription;
  let prometheus: Prometheus;
  let bridgeMetrics: string;
  const deadLetters: IncomingMessage[] = [];

  before(async () => {
    harness = await createRunnerHarness('no-verdict', { BUILD_ATTEMPTS: '2', CHECKOUT_TIMEOUT_SEC: '10' });
    const { config } = harness.space;
    // The dead-letter topic accepts smaller records than the source topic (1 MB): larger ones must be cut to fit.
    await setTopicConfig(config.kafka.brokers, config.topicDeadLetter, {
      'max.message.bytes': String(DEAD_LETTER_LIMIT),
    });
    const bridge = await harness.startBridge();
    await harness.startWorker();
    prometheus = await startPrometheus({ 'ci-runner-bridge': new URL(bridge.metricsUrl).host });
    bridgeMetrics = `${bridge.metricsUrl}/metrics`;
    // Prometheus has seen the dead-letter counter at 0 before anything is dead-lettered.
    for (let waited = 0; ; waited += 200) {
      const [sample] = await prometheus.query(DEAD_LETTERED);
      if (sample?.value[1] === '0') break;
      if (waited > 30_000) throw new Error('prometheus never scraped the bridge');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    dlq = await subscribe({
      brokers: config.kafka.brokers,
      clientId: 'test-dlq',
      groupId: `test-dlq-${randomUUID()}`,
      topic: config.topicDeadLetter,
      startAt: 'earliest',
      logger: harness.logger,
      onMessage: async (message) => void deadLetters.push(message),
    });
  });

  const newRepoWithCommit = async (name: string) => {
    const repo = await harness.newRepo(name);
    const sha = await repo.commit(cleanProject(), 'clean');
    repo.push('main');
    return Object.assign(repo, { sha });
  };

  after(async () => {
    await prometheus?.close();
    await dlq?.close();
    await harness?.close();
  });

  test('an unreachable repository, a missing one and a commit the remote does not have: ERRORED with the reason', async () => {
    const repo = await harness.newRepo('present');
    await repo.commit(cleanProject(), 'pushed');
    repo.push('main');
    const neverPushed = await repo.commit({ 'x.txt': 'x\n' }, 'not pushed');
    const unreachableSha = 'd'.repeat(40);
    const absentSha = 'e'.repeat(40);
    await harness.announce({
      sha: absentSha,
      repositoryUrl: repo.url.replace(/present\.git$/, 'absent.git'),
    });
    await harness.announce({
      sha: unreachableSha,
      repositoryUrl: 'http://127.0.0.1:9/nothing-listens-here.git',
    });
    await harness.announce({ sha: neverPushed, repositoryUrl: repo.url });

    const [unreachable, missing, absent] = await Promise.all([
      harness.reports.waitFor(unreachableSha),
      harness.reports.waitFor(neverPushed),
      harness.reports.waitFor(absentSha),
    ]);
    assert.equal(absent.status, 'ERRORED');
    assert.match(absent.error, /^checkout: .*no repository at http:\/\/[^ ]+ \(HTTP 404\)/);
    for (const report of [absent, unreachable, missing]) {
      assert.deepEqual(
        report.stages.map((stage) => [stage.name, stage.outcome]),
        [['checkout', 'errored']],
        'an ERRORED report names the stage that failed',
      );
    }
    assert.equal(absent.attempt, 1, 'a refusal is not retried');
    assert.equal(unreachable.status, 'ERRORED');
    assert.match(
      unreachable.error,
      /repository http:\/\/127\.0\.0\.1:9\/nothing-listens-here\.git is unreachable/,
    );
    assert.equal(unreachable.attempt, 2, 'reported after the last attempt');
    assert.equal(missing.status, 'ERRORED');
    assert.match(missing.error, /not on the server \(force-pushed away\?\)/);
    assert.equal(missing.attempt, 1, "not retried: the branch's whole history was fetched without it");
  });

  test('an ERRORED commit is built again by a new CommitResult (a corrected URL); a verdict is only republished', async () => {
    const repo = await newRepoWithCommit('corrected');
    const sha = repo.sha;
    await harness.announce({ sha, repositoryUrl: repo.url.replace(/corrected\.git$/, 'typo.git') });
    const errored = await harness.reports.waitFor(sha);
    assert.equal(errored.status, 'ERRORED');
    await harness.announce({ sha, repositoryUrl: repo.url });
    const built = await harness.reports.waitFor(sha, 240_000, 2);
    assert.equal(built.status, 'PASSED', built.error);
    assert.equal(built.republished, false, 'a new build, not the stored report');
    assert.equal(built.repositoryUrl, repo.url, "built from the new message's URL");
    await harness.announce({ sha, repositoryUrl: repo.url });
    const again = await harness.reports.waitFor(sha, 60_000, 3);
    assert.equal(again.republished, true, 'a verdict is republished, marked as such');
    assert.deepEqual({ ...again, republished: false }, built);
  });

  test('enqueue learns at once that the bridge dead-lettered its CommitResult, and why', async () => {
    const { config } = harness.space;
    const started = Date.now();
    const outcome = await enqueueAndWait(
      config.kafka.brokers,
      {
        commitResults: config.topicCommitResults,
        buildReports: config.topicBuildReports,
        deadLetter: config.topicDeadLetter,
      },
      {
        repositoryUrl: 'http://127.0.0.1:9/r.git',
        commitSha: 'b'.repeat(40),
        branchName: '--upload-pack=evil',
        taskId: 't',
        status: 'SUCCESS',
        timeoutMs: 60_000,
      },
      harness.logger,
    );
    assert.deepEqual(outcome, {
      kind: 'dead-lettered',
      reason: 'branch_name "--upload-pack=evil" starts with "-"',
    });
    assert.ok(Date.now() - started < 30_000, 'long before the timeout');
  });

  test('malformed and hostile messages go to the dead-letter topic with the reason, and the bridge keeps going', async () => {
    const good = await harness.newRepo('after-garbage');
    const sha = await good.commit(cleanProject(), 'clean');
    good.push('main');
    const earlier = deadLetters.length;
    await harness.send('garbage', Buffer.from([0x0f, 0x01, 0x02]));
    await harness.send('lenient', Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f]));
    await harness.announce({ sha: 'abc', repositoryUrl: good.url });
    const hostile = '--upload-pack=touch /tmp/pwned';
    await harness.announce({ sha: 'a'.repeat(40), repositoryUrl: good.url, branch: hostile });
    await harness.announce({ sha, repositoryUrl: good.url });
    const report = await harness.reports.waitFor(sha);
    assert.equal(report.status, 'PASSED', report.error);

    for (let waited = 0; deadLetters.length < earlier + 4 && waited < 30_000; waited += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const reasons = Object.fromEntries(
      deadLetters.map((m) => [m.key?.toString(), m.headers['x-ci-runner-error']?.toString()]),
    );
    assert.match(reasons.garbage ?? '', /not a CommitResult/);
    assert.match(reasons.lenient ?? '', /not a CommitResult: index out of range/);
    assert.match(reasons.abc ?? '', /not 40 hex/);
    assert.match(reasons['a'.repeat(40)] ?? '', /branch_name .* starts with "-"/);
    const original = deadLetters.find((m) => m.key?.toString() === 'garbage');
    assert.deepEqual(original?.value, Buffer.from([0x0f, 0x01, 0x02]), 'the original bytes are kept');
  });
  test('every invalid record reaches the dead-letter topic byte for byte (cut to fit when too large), counted, and the shipped alert fires', async () => {
    const good = await harness.newRepo('after-poison');
    const sha = await good.commit(cleanProject(), 'clean');
    good.push('main');
    const before = deadLetters.length;
    const binaryKey = Buffer.from([0xff, 0x00, 0xfe, 0x80]);
    const traceHeader = Buffer.from([0x01, 0x02, 0xff]);
    // commit_sha (field 2) sent as a varint: protobufjs alone would decode it as an empty CommitResult.
    const wrongWireType = Buffer.from([0x10, 0x05, 0x22, 0x00]);
    await harness.send(binaryKey, wrongWireType, { 'trace-id': traceHeader });
    await harness.announce({ sha: 'f'.repeat(40), repositoryUrl: good.url, status: '' });
    await harness.send(null, Buffer.from('not protobuf at all: \x07'));
    // 300 kB, larger than the dead-letter topic accepts: it must not hold the partition.
    const poison = Buffer.alloc(300_000, 0x0f);
    await harness.send('poison', poison);
    await harness.announce({ sha: 'c'.repeat(40), repositoryUrl: good.url, status: 'FAILURE' });
    await harness.announce({ sha, repositoryUrl: good.url });
    const report = await harness.reports.waitFor(sha);
    assert.equal(report.status, 'PASSED', 'the commit behind the poison pill was built');
    await waitUntil(() => deadLetters.length >= before + 4, 'four dead letters');
    const letters = deadLetters.slice(before);

    const wire = letters.find((m) => m.key?.equals(binaryKey));
    assert.ok(wire, 'a binary key arrives unchanged');
    assert.deepEqual(wire.value, wrongWireType);
    assert.deepEqual(wire.headers['trace-id'], traceHeader, "the record's own headers are kept");
    assert.match(String(wire.headers['x-ci-runner-error']), /field 2 \(commitSha\) arrived as varint/);
    const noStatus = letters.find((m) => m.key?.toString() === 'f'.repeat(40));
    assert.equal(noStatus?.headers['x-ci-runner-error']?.toString(), 'status is missing');
    const keyless = letters.find((m) => m.key === null);
    assert.ok(keyless, 'a record without a key is dead-lettered without one (not with "")');
    assert.deepEqual(keyless.value, Buffer.from('not protobuf at all: \x07'));
    const cut = letters.find((m) => m.key?.toString() === 'poison');
    assert.ok(cut, 'the oversize record is dead-lettered');
    assert.equal(cut.headers['x-ci-runner-truncated']?.toString(), 'true');
    assert.equal(cut.headers['x-original-size']?.toString(), String(poison.length));
    assert.equal(
      cut.headers['x-original-sha256']?.toString(),
      createHash('sha256').update(poison).digest('hex'),
    );
    assert.ok((cut.value?.length ?? 0) > 0 && (cut.value?.length ?? 0) < DEAD_LETTER_LIMIT);
    assert.deepEqual(cut.value, poison.subarray(0, cut.value?.length), 'cut, not altered');

    const metrics = await (await fetch(bridgeMetrics)).text();
    assert.equal(scrapedValue(metrics, DEAD_LETTERED), deadLetters.length, 'every dead letter is counted');
    assert.equal(scrapedValue(metrics, 'ci_bridge_messages_total{outcome="skipped"}'), 1);
    assert.equal(scrapedValue(metrics, 'ci_bridge_messages_total{outcome="dead_letter_failed"}'), 0);
    let firing = false;
    for (let waited = 0; !firing && waited < 60_000; waited += 500) {
      const alerts = await prometheus.alerts();
      firing = alerts.some((a) => a.labels.alertname === 'CiRunnerDeadLetters' && a.state === 'firing');
      if (!firing) await new Promise((resolve) => setTimeout(resolve, 500));
    }
    assert.ok(firing, 'the shipped CiRunnerDeadLetters rule fires after a dead letter');
  });
});
