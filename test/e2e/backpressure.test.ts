import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Queue } from 'bullmq';
import { startBridge } from '../../src/bridge/bridge.js';
import { encodeCommitResult } from '../../src/contracts.js';
import { type GitServer, startGitServer } from '../../src/gitServer.js';
import { connectPublisher, type Publisher } from '../../src/kafka.js';
import type { Closable } from '../../src/lifecycle.js';
import { connectRedis } from '../../src/queue.js';
import { startWorker } from '../../src/worker/worker.js';
import { createFixtureRepo, type FixtureRepo } from '../support/fixtureRepo.js';
import { createTestSpace, type TestSpace, testLogger } from '../support/harness.js';
import { cleanProject } from '../support/pythonProject.js';
import { collectReports, type ReportCollector } from '../support/reportCollector.js';

describe('backpressure', () => {
  const logger = testLogger('backpressure');
  const redis = connectRedis(process.env.REDIS_URL ?? 'redis://127.0.0.1:16379');
  let space: TestSpace;
  let git: GitServer;
  let repo: FixtureRepo;
  let bridge: Closable;
  let worker: Closable | undefined;
  let agent: Publisher;
  let reports: ReportCollector;

  before(async () => {
    space = await createTestSpace({ MAX_WAITING_JOBS: '2' });
    const served = join(space.dir, 'served');
    await mkdir(served);
    git = await startGitServer(served);
    repo = await createFixtureRepo(served, git.baseUrl, 'many');
    bridge = await startBridge(space.config, logger);
    agent = await connectPublisher(space.config.kafkaBrokers, 'test-agent', logger);
    reports = await collectReports(space.config.kafkaBrokers, space.config.topicBuildReports, logger);
  });

  after(async () => {
    await Promise.all([reports?.close(), agent?.close()]);
    await Promise.all([bridge?.close(), worker?.close()]);
    await git?.close();
    await repo?.cleanup();
    redis.disconnect();
    await space?.cleanup();
  });

  test('consumption pauses while more builds wait than MAX_WAITING_JOBS and resumes as they drain', async () => {
    const shas: string[] = [];
    await repo.commit(cleanProject(), 'base');
    for (let i = 0; i < 8; i += 1) shas.push(await repo.commit({ 'N.txt': `${i}\n` }, `c${i}`));
    repo.push('main');
    for (const sha of shas) {
      const value = encodeCommitResult({
        taskId: 't',
        commitSha: sha,
        branchName: 'main',
        status: 'SUCCESS',
        repositoryUrl: repo.url,
      });
      await agent.send(space.config.topicCommitResults, [{ key: sha, value }]);
    }
    const queue = new Queue(space.config.queueName, { connection: redis });
    let most = 0;
    for (let waited = 0; waited < 6_000; waited += 200) {
      most = Math.max(most, await queue.getWaitingCount());
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    // No worker yet: the bridge stops taking messages once MAX_WAITING_JOBS builds wait.
    assert.equal(most, 2);

    worker = await startWorker(space.config, logger);
    const all = await Promise.all(shas.map((sha) => reports.waitFor(sha)));
    assert.deepEqual(
      all.map((report) => report.status),
      shas.map(() => 'PASSED'),
    );
  });
});
