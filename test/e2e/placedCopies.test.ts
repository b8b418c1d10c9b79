import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { type Job, Queue, Worker } from 'bullmq';
import { sleep } from '../../faults/cluster.js';
import { sweepHostQueues } from '../../src/bridge/sweepHostQueues.js';
import type { BuildReport } from '../../src/delivery/contracts.js';
import { Placement } from '../../src/delivery/placement.js';
import { type BuildJobData, buildJobId, connectRedis } from '../../src/delivery/queue.js';
import { ReportStore } from '../../src/delivery/reportStore.js';
import { Supersession } from '../../src/delivery/supersession.js';
import { erroredReport } from '../../src/pipeline/report.js';
import { type PlacedParts, runCanonical, runHostCopy } from '../../src/worker/placedCopies.js';
import { testLogger } from '../support/harness.js';

// The two copies of a placed build in one worker process (a host with two slots): the shared queue's job must not
// take the host copy's claim for its own.
describe('placed copies in one process, on real Redis and BullMQ', () => {
  const redis = connectRedis(process.env.REDIS_URL ?? 'redis://127.0.0.1:16379');
  const workerRedis = connectRedis(process.env.REDIS_URL ?? 'redis://127.0.0.1:16379');
  const queueName = `placed-${randomUUID().slice(0, 8)}`;
  let queue: Queue<BuildJobData>;
  let parts: PlacedParts;
  before(() => {
    queue = new Queue<BuildJobData>(queueName, { connection: redis });
    parts = {
      placement: new Placement(redis, queueName),
      store: new ReportStore(redis, queueName, 3600),
      supersession: new Supersession(redis, queueName, 3600),
      queue,
      holder: `host-a ${process.pid} ${randomUUID()}`,
      running: new Map(),
      logger: testLogger('placed-copies'),
    };
  });
  after(async () => {
    await queue.obliterate({ force: true });
    await queue.close();
    redis.disconnect();
    workerRedis.disconnect();
  });

  test("while this process's host copy builds a commit, its shared job waits (delayed), then ends with that report", async () => {
    const sha = 'a'.repeat(40);
    const data = {
      taskId: 't',
      commitSha: sha,
      branchName: 'main',
      repositoryUrl: 'http://x/r.git',
      placedOn: 'host-a',
    };
    let builds = 0;
    let finish: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => {
      finish = resolve;
    });
    // The one build: slow until the test lets it finish, then it records its report as the worker does.
    const build = async () => {
      builds += 1;
      await finished;
      const report = {
        ...erroredReport({ ...data, attempt: 1 }, new Error('x'), 1),
        status: 'PASSED',
        error: '',
      };
      return parts.store.record(report as BuildReport);
    };
    const own = new Queue<BuildJobData>(`${queueName}@host-a`, { connection: redis });
    const hostWorker = new Worker<BuildJobData>(
      `${queueName}@host-a`,
      (job: Job<BuildJobData>, token?: string) => runHostCopy(parts, job, token, build),
      { connection: workerRedis },
    );
    // The shared queue's worker starts once the host copy builds (the bridge adds the shared job first, as here).
    let sharedWorker: Worker<BuildJobData, BuildReport> | undefined;
    try {
      await queue.add('build', data, { jobId: buildJobId(sha) });
      await own.add('build', data, { jobId: buildJobId(sha) });
      for (let waited = 0; builds === 0 && waited < 10_000; waited += 50) await sleep(50);
      assert.equal(builds, 1, 'the host copy builds');
      sharedWorker = new Worker<BuildJobData, BuildReport>(
        queueName,
        (job: Job<BuildJobData, BuildReport>, token?: string) => runCanonical(parts, job, token, build),
        { connection: workerRedis },
      );
      const state = async () => (await queue.getJob(buildJobId(sha)))?.getState();
      for (let waited = 0; (await state()) !== 'delayed' && waited < 10_000; waited += 50) await sleep(50);
      assert.equal(await state(), 'delayed', 'the shared job waits for the copy');
      assert.equal(builds, 1, 'and does not build the commit a second time in the same process');
      finish();
      for (let waited = 0; (await state()) !== 'completed' && waited < 10_000; waited += 50) await sleep(50);
      assert.equal(await state(), 'completed', 'promoted as the copy finished, completed with its report');
      assert.equal((await queue.getJob(buildJobId(sha)))?.returnvalue?.status, 'PASSED');
      assert.equal(builds, 1);
    } finally {
      finish();
      await Promise.all([hostWorker.close(), sharedWorker?.close()]);
      await own.obliterate({ force: true });
      await own.close();
    }
  });

  test("a retired host's own queue is removed; a live host's stays, and so does every build's shared job", async () => {
    const { placement } = parts;
    const data = {
      taskId: 't',
      commitSha: 'b'.repeat(40),
      branchName: 'main',
      repositoryUrl: 'http://x/r.git',
    };
    const queues = ['gone-host', 'live-host'].map(
      (host) => new Queue<BuildJobData>(`${queueName}@${host}`, { connection: redis }),
    );
    try {
      for (const queue of queues) await queue.add('build', data, { jobId: buildJobId(data.commitSha) });
      await queue.add('build', data, { jobId: buildJobId(data.commitSha) });
      await placement.sawHostQueues(['gone-host', 'live-host']);
      await placement.heartbeat('live-host', 'p1', 1);
      const logger = testLogger('sweep');
      assert.deepEqual(
        await sweepHostQueues(placement, queueName, redis, logger, 60_000),
        [],
        'not gone long enough',
      );
      assert.deepEqual(await sweepHostQueues(placement, queueName, redis, logger, 0), ['gone-host']);
      assert.equal(await queues[0]?.count(), 0, "the retired host's copy is gone");
      assert.equal(await queues[1]?.count(), 1, "the live host's copy stays");
      assert.equal(await queue.count(), 1, "the build's shared job stays");
      assert.deepEqual([...(await placement.hostQueues()).keys()], ['live-host']);
    } finally {
      for (const own of queues) {
        await own.obliterate({ force: true });
        await own.close();
      }
    }
  });
});
