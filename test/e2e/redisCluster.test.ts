import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Queue } from 'bullmq';
import { decodeBuildReport } from '../../src/delivery/contracts.js';
import { buildJobId, connectRedis } from '../../src/delivery/queue.js';
import { cleanProject } from '../support/pythonProject.js';
import { createRunnerHarness, type RunnerHarness } from '../support/runnerHarness.js';

const run = promisify(execFile);
const CLUSTER = resolve('scripts/redis-cluster.sh');

describe('REDIS_CLUSTER_NODES: the runner on a real Redis Cluster (three primaries, scripts/redis-cluster.sh)', () => {
  let harness: RunnerHarness;
  let redis: ReturnType<typeof connectRedis>;
  let queue: Queue;
  before(async () => {
    const { stdout } = await run('bash', [CLUSTER, 'up']);
    const nodes = /REDIS_CLUSTER_NODES=(\S+)/.exec(stdout)?.[1] as string;
    harness = await createRunnerHarness('redis-cluster', {
      REDIS_CLUSTER_NODES: nodes,
      // The hash tag puts every key of the queue (BullMQ's and the runner's) in one slot.
      QUEUE_NAME: `{cluster-${randomUUID().slice(0, 8)}}`,
    });
    redis = connectRedis(harness.space.config.redis);
    queue = new Queue(harness.space.config.queueName, { connection: redis });
    await harness.startBridge();
    await harness.startWorker();
  });
  after(async () => {
    await queue?.close();
    redis?.disconnect();
    await harness?.close();
    await run('bash', [CLUSTER, 'down']);
  });

  test('a commit is built and reported, a redelivery republishes, and a newer commit supersedes a waiting one', async () => {
    const repo = await harness.newRepo('cluster');
    const sha = await repo.commit(cleanProject(), 'clean project');
    repo.push('main');
    await harness.announce({ sha, repositoryUrl: repo.url });
    const report = await harness.reports.waitFor(sha);
    assert.equal(report.status, 'PASSED', report.error);
    assert.equal(await (await queue.getJob(buildJobId(sha)))?.getState(), 'completed');

    await harness.announce({ sha, repositoryUrl: repo.url });
    await harness.reports.waitFor(sha, 60_000, 2);
    const again = decodeBuildReport((harness.reports.received(sha)[1] as { bytes: Buffer }).bytes);
    assert.equal(again.republished, true);

    // The newer commit (by announcement time) arrives first: the older one is superseded on arrival (the branch
    // tip's script).
    const older = await repo.commit({ 'NOTE.md': 'older\n' }, 'older');
    const newer = await repo.commit({ 'NOTE.md': 'newer\n' }, 'newer');
    repo.push('feature/cluster');
    const at = Date.now();
    await harness.announce({ sha: newer, repositoryUrl: repo.url, branch: 'feature/cluster', at: at + 1 });
    await harness.announce({ sha: older, repositoryUrl: repo.url, branch: 'feature/cluster', at });
    const canceled = await harness.reports.waitFor(older);
    assert.equal(canceled.status, 'ERRORED');
    assert.equal(canceled.supersededBy, newer);
    assert.equal((await harness.reports.waitFor(newer)).status, 'PASSED');
  });

  test('a queue name without a hash tag is refused with REDIS_CLUSTER_NODES, in one line', async () => {
    const { loadConfig } = await import('../../src/ops/config.js');
    assert.throws(
      () =>
        loadConfig({
          REDIS_CLUSTER_NODES: '127.0.0.1:16500',
          KAFKA_BROKERS: '127.0.0.1:19092',
          QUEUE_NAME: 'builds',
        }),
      /QUEUE_NAME needs a hash tag with REDIS_CLUSTER_NODES, so that its keys share a slot: such as \{builds\}/,
    );
  });
});
