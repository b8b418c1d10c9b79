import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { type IncomingMessage, type Subscription, subscribe } from '../../src/kafka.js';
import { cleanProject } from '../support/pythonProject.js';
import { createRunnerHarness, type RunnerHarness } from '../support/runnerHarness.js';

describe('no verdict possible, and bad input', () => {
  let harness: RunnerHarness;
  let dlq: Subscription;
  const deadLetters: IncomingMessage[] = [];

  before(async () => {
    harness = await createRunnerHarness('no-verdict', { BUILD_ATTEMPTS: '2', CHECKOUT_TIMEOUT_SEC: '10' });
    await harness.startBridge();
    await harness.startWorker();
    const { config } = harness.space;
    dlq = await subscribe({
      brokers: config.kafkaBrokers,
      clientId: 'test-dlq',
      groupId: `test-dlq-${randomUUID()}`,
      topic: config.topicDeadLetter,
      startAt: 'earliest',
      logger: harness.logger,
      onMessage: async (message) => void deadLetters.push(message),
    });
  });

  after(async () => {
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
    assert.match(absent.error, /the server answered 404 Not Found \(no repository at this URL\)/);
    assert.equal(absent.attempt, 1, 'a refusal is not retried');
    assert.equal(unreachable.status, 'ERRORED');
    assert.match(
      unreachable.error,
      /repository http:\/\/127\.0\.0\.1:9\/nothing-listens-here\.git is unreachable/,
    );
    assert.equal(unreachable.attempt, 2, 'reported after the last attempt');
    assert.equal(missing.status, 'ERRORED');
    assert.match(missing.error, /cannot be fetched/);
  });

  test('malformed and hostile messages go to the dead-letter topic with the reason, and the bridge keeps going', async () => {
    const good = await harness.newRepo('after-garbage');
    const sha = await good.commit(cleanProject(), 'clean');
    good.push('main');
    await harness.send('garbage', Buffer.from([0x0f, 0x01, 0x02]));
    await harness.send('lenient', Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f]));
    await harness.announce({ sha: 'abc', repositoryUrl: good.url });
    const hostile = '--upload-pack=touch /tmp/pwned';
    await harness.announce({ sha: 'a'.repeat(40), repositoryUrl: good.url, branch: hostile });
    await harness.announce({ sha, repositoryUrl: good.url });
    const report = await harness.reports.waitFor(sha);
    assert.equal(report.status, 'PASSED', report.error);

    for (let waited = 0; deadLetters.length < 4 && waited < 30_000; waited += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const reasons = Object.fromEntries(
      deadLetters.map((m) => [m.key?.toString(), m.headers['x-ci-runner-error']]),
    );
    assert.match(reasons.garbage ?? '', /not a CommitResult/);
    assert.match(reasons.lenient ?? '', /commit_sha is missing/);
    assert.match(reasons.abc ?? '', /not 40 hex/);
    assert.match(reasons['a'.repeat(40)] ?? '', /branch_name .* starts with "-"/);
    const original = deadLetters.find((m) => m.key?.toString() === 'garbage');
    assert.deepEqual(original?.value, Buffer.from([0x0f, 0x01, 0x02]), 'the original bytes are kept');
  });
});
