import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startBridge } from '../../src/bridge/bridge.js';
import { encodeCommitResult } from '../../src/contracts.js';
import { type GitServer, startGitServer } from '../../src/gitServer.js';
import {
  connectPublisher,
  type IncomingMessage,
  type Publisher,
  type Subscription,
  subscribe,
} from '../../src/kafka.js';
import type { Closable } from '../../src/lifecycle.js';
import { startWorker } from '../../src/worker/worker.js';
import { createFixtureRepo } from '../support/fixtureRepo.js';
import { createTestSpace, type TestSpace, testLogger } from '../support/harness.js';
import { cleanProject } from '../support/pythonProject.js';
import { collectReports, type ReportCollector } from '../support/reportCollector.js';

describe('no verdict possible, and bad input', () => {
  const logger = testLogger('no-verdict');
  let space: TestSpace;
  let git: GitServer;
  let served: string;
  let bridge: Closable;
  let worker: Closable;
  let agent: Publisher;
  let reports: ReportCollector;
  let dlq: Subscription;
  const deadLetters: IncomingMessage[] = [];

  before(async () => {
    space = await createTestSpace({ BUILD_ATTEMPTS: '2', CHECKOUT_TIMEOUT_SEC: '10' });
    served = join(space.dir, 'served');
    await mkdir(served);
    git = await startGitServer(served);
    bridge = await startBridge(space.config, logger);
    worker = await startWorker(space.config, logger);
    agent = await connectPublisher(space.config.kafkaBrokers, 'test-agent', logger);
    reports = await collectReports(space.config.kafkaBrokers, space.config.topicBuildReports, logger);
    dlq = await subscribe({
      brokers: space.config.kafkaBrokers,
      clientId: 'test-dlq',
      groupId: `test-dlq-${randomUUID()}`,
      topic: space.config.topicDeadLetter,
      startAt: 'earliest',
      logger,
      onMessage: async (message) => void deadLetters.push(message),
    });
  });

  after(async () => {
    await Promise.all([reports?.close(), agent?.close(), dlq?.close()]);
    await Promise.all([bridge?.close(), worker?.close()]);
    await git?.close();
    await space?.cleanup();
  });

  const announce = (sha: string, repositoryUrl: string, taskId = 'task') =>
    agent.send(space.config.topicCommitResults, [
      {
        key: sha,
        value: encodeCommitResult({
          taskId,
          commitSha: sha,
          branchName: 'main',
          status: 'SUCCESS',
          repositoryUrl,
        }),
      },
    ]);

  test('an unreachable repository and a commit the remote does not have: ERRORED with the reason, after the retries', async () => {
    const repo = await createFixtureRepo(served, git.baseUrl, 'present');
    await repo.commit(cleanProject(), 'pushed');
    repo.push('main');
    const neverPushed = await repo.commit({ 'x.txt': 'x\n' }, 'not pushed');
    const unreachableSha = 'd'.repeat(40);
    await announce(unreachableSha, 'http://127.0.0.1:9/nothing-listens-here.git');
    await announce(neverPushed, repo.url);

    const [unreachable, missing] = await Promise.all([
      reports.waitFor(unreachableSha),
      reports.waitFor(neverPushed),
    ]);
    assert.equal(unreachable.status, 'ERRORED');
    assert.match(
      unreachable.error,
      /repository http:\/\/127\.0\.0\.1:9\/nothing-listens-here\.git is unreachable/,
    );
    assert.equal(unreachable.attempt, 2, 'reported after the last attempt');
    assert.equal(missing.status, 'ERRORED');
    assert.match(missing.error, /cannot be fetched/);
    await repo.cleanup();
  });

  test('malformed and hostile messages go to the dead-letter topic with the reason, and the bridge keeps going', async () => {
    const good = await createFixtureRepo(served, git.baseUrl, 'after-garbage');
    const sha = await good.commit(cleanProject(), 'clean');
    good.push('main');
    await agent.send(space.config.topicCommitResults, [
      { key: 'garbage', value: Buffer.from([0x0f, 0x01, 0x02]) },
      { key: 'lenient', value: Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f]) },
      {
        key: 'short',
        value: encodeCommitResult({
          taskId: 't',
          commitSha: 'abc',
          branchName: 'main',
          status: 'SUCCESS',
          repositoryUrl: good.url,
        }),
      },
      {
        key: 'a'.repeat(40),
        value: encodeCommitResult({
          taskId: 't',
          commitSha: 'a'.repeat(40),
          branchName: '--upload-pack=touch /tmp/pwned',
          status: 'SUCCESS',
          repositoryUrl: good.url,
        }),
      },
    ]);
    await announce(sha, good.url);
    const report = await reports.waitFor(sha);
    assert.equal(report.status, 'PASSED', report.error);

    for (let waited = 0; deadLetters.length < 4 && waited < 30_000; waited += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const reasons = Object.fromEntries(
      deadLetters.map((m) => [m.key?.toString(), m.headers['x-ci-runner-error']]),
    );
    assert.match(reasons.garbage ?? '', /not a CommitResult/);
    assert.match(reasons.lenient ?? '', /commit_sha is missing/);
    assert.match(reasons.short ?? '', /not 40 hex/);
    assert.match(reasons['a'.repeat(40)] ?? '', /branch_name .* starts with "-"/);
    const original = deadLetters.find((m) => m.key?.toString() === 'garbage');
    assert.deepEqual(original?.value, Buffer.from([0x0f, 0x01, 0x02]), 'the original bytes are kept');
    await good.cleanup();
  });
});
