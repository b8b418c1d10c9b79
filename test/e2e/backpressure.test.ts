import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Queue } from 'bullmq';
import { connectRedis } from '../../src/delivery/queue.js';
import { cleanProject } from '../support/pythonProject.js';
import { createRunnerHarness, type RunnerHarness } from '../support/runnerHarness.js';

describe('backpressure', () => {
  const redis = connectRedis(process.env.REDIS_URL ?? 'redis://127.0.0.1:16379');
  let harness: RunnerHarness;

  before(async () => {
    harness = await createRunnerHarness('backpressure', { MAX_WAITING_JOBS: '2' });
    await harness.startBridge();
  });

  after(async () => {
    await harness?.close();
    redis.disconnect();
  });

  test('consumption pauses while more builds wait than MAX_WAITING_JOBS and resumes as they drain', async () => {
    const repo = await harness.newRepo('many');
    const shas: string[] = [];
    await repo.commit(cleanProject(), 'base');
    for (let i = 0; i < 8; i += 1) shas.push(await repo.commit({ 'N.txt': `${i}\n` }, `c${i}`));
    repo.push('main');
    for (const sha of shas) await harness.announce({ sha, repositoryUrl: repo.url });
    const queue = new Queue(harness.space.config.queueName, { connection: redis });
    let most = 0;
    for (let waited = 0; waited < 6_000; waited += 200) {
      most = Math.max(most, await queue.getWaitingCount());
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    // No worker yet: the bridge stops taking messages once MAX_WAITING_JOBS builds wait.
    assert.equal(most, 2);

    await harness.startWorker();
    const all = await Promise.all(shas.map((sha) => harness.reports.waitFor(sha)));
    assert.deepEqual(
      all.map((report) => report.status),
      shas.map(() => 'PASSED'),
    );
  });
});
