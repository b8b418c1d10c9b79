import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Queue } from 'bullmq';
import { type Cluster, createCluster, sleep } from '../../faults/cluster.js';
import { type BuildReport, encodeCommitResult } from '../../src/delivery/contracts.js';
import { buildJobId, connectRedis } from '../../src/delivery/queue.js';
import type { FixtureRepo } from '../support/fixtureRepo.js';
import { cleanProject } from '../support/pythonProject.js';
import { createRunnerHarness, type RunnerHarness } from '../support/runnerHarness.js';
import { scrapedValue } from '../support/scrapedValue.js';

// A report saying the build of `sha` did not run, or stopped, because `newer` was announced on its branch.
function assertSuperseded(report: BuildReport, newer: string, branch: string): void {
  assert.equal(report.status, 'ERRORED');
  assert.equal(report.error, `superseded by ${newer}`);
  assert.equal(report.supersededBy, newer);
  assert.equal(report.branchName, branch);
}

// Waits until `check` holds, polling.
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  for (const started = Date.now(); Date.now() - started < timeoutMs; await sleep(100)) {
    if (await check()) return;
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('superseded builds: a newer commit of a branch cancels the waiting build of an older one', () => {
  let harness: RunnerHarness;
  let queue: Queue;
  let redis: ReturnType<typeof connectRedis>;
  let repo: FixtureRepo;
  let bridgeMetrics: string;
  before(async () => {
    harness = await createRunnerHarness('supersede');
    redis = connectRedis(harness.space.config.redis.url);
    queue = new Queue(harness.space.config.queueName, { connection: redis });
    bridgeMetrics = (await harness.startBridge()).metricsUrl;
    repo = await harness.newRepo('supersede');
  });
  after(async () => {
    await queue?.close();
    redis?.disconnect();
    await harness?.close();
  });

  // A new commit on `branch`, pushed there.
  const commitOn = async (branch: string, note: string): Promise<string> => {
    const sha = await repo.commit({ ...cleanProject(), 'NOTE.md': `${note}\n` }, note);
    repo.push(branch);
    return sha;
  };
  const state = async (sha: string) => (await queue.getJob(buildJobId(sha)))?.getState();
  const scrape = async () => (await fetch(`${bridgeMetrics}/metrics`)).text();

  test('waiting (the default): the older build is removed and reported; main keeps every build; the newer builds', async () => {
    const t = Date.now();
    const older = await commitOn('feature/x', 'older');
    const newer = await commitOn('feature/x', 'newer');
    await harness.announce({ sha: older, repositoryUrl: repo.url, branch: 'feature/x', at: t });
    await until('the older build to wait', async () => (await state(older)) === 'waiting');
    await harness.announce({ sha: newer, repositoryUrl: repo.url, branch: 'feature/x', at: t + 1000 });
    const report = await harness.reports.waitFor(older, 30_000);
    assertSuperseded(report, newer, 'feature/x');
    assert.equal(report.taskId, `task-${older.slice(0, 6)}`);
    assert.equal(report.attempt, 0);
    assert.equal(await state(older), undefined, 'removed from the queue');
    assert.equal(await state(newer), 'waiting');

    // main is not in the default CANCEL_SUPERSEDED_BRANCHES (!main,!master): both of its commits stay queued.
    const first = await commitOn('main', 'main one');
    const second = await commitOn('main', 'main two');
    await harness.announce({ sha: first, repositoryUrl: repo.url, branch: 'main', at: t });
    await harness.announce({ sha: second, repositoryUrl: repo.url, branch: 'main', at: t + 1000 });
    await until('both main builds to wait', async () => (await state(second)) === 'waiting');
    assert.equal(await state(first), 'waiting');

    const metrics = await scrape();
    assert.equal(scrapedValue(metrics, 'ci_builds_superseded_total{when="waiting"}'), 1);
    assert.equal(scrapedValue(metrics, 'ci_builds_superseded_total{when="on_arrival"}'), 0);

    await harness.startWorker();
    for (const sha of [newer, first, second]) {
      const built = await harness.reports.waitFor(sha);
      assert.equal(built.status, 'PASSED', built.error);
      assert.equal(built.supersededBy, '');
    }
    assert.equal(harness.reports.received(older).length, 1, 'the older commit had one report, and no build');
  });

  test('an older commit arriving after the newer one (a redelivery) is reported superseded and cancels nothing', async () => {
    const t = Date.now();
    const older = await commitOn('feature/y', 'old');
    const newer = await commitOn('feature/y', 'new');
    await harness.announce({ sha: newer, repositoryUrl: repo.url, branch: 'feature/y', at: t + 1000 });
    // Produced later, but stamped earlier: Kafka's record time decides, not arrival.
    await harness.announce({ sha: older, repositoryUrl: repo.url, branch: 'feature/y', at: t });
    assertSuperseded(await harness.reports.waitFor(older, 30_000), newer, 'feature/y');
    const built = await harness.reports.waitFor(newer);
    assert.equal(built.status, 'PASSED', built.error);

    // Delivered again: reported superseded again, still never built; the newer commit's verdict is republished.
    await harness.announce({ sha: older, repositoryUrl: repo.url, branch: 'feature/y', at: t });
    assertSuperseded(await harness.reports.waitFor(older, 30_000, 2), newer, 'feature/y');
    assert.equal(await state(older), undefined);
    await harness.announce({ sha: newer, repositoryUrl: repo.url, branch: 'feature/y', at: t + 1000 });
    const again = await harness.reports.waitFor(newer, 30_000, 2);
    assert.equal(again.status, 'PASSED');
    assert.ok(again.republished);
    const metrics = await scrape();
    assert.equal(scrapedValue(metrics, 'ci_builds_superseded_total{when="on_arrival"}'), 2);
    assert.equal(scrapedValue(metrics, 'ci_bridge_messages_total{outcome="superseded"}'), 2);
  });

  test("a branch reset to an earlier commit gets that commit's verdict, not its old supersession", async () => {
    const t = Date.now();
    const first = await commitOn('feature/z', 'first');
    const second = await commitOn('feature/z', 'second');
    await harness.announce({ sha: second, repositoryUrl: repo.url, branch: 'feature/z', at: t + 1000 });
    await harness.announce({ sha: first, repositoryUrl: repo.url, branch: 'feature/z', at: t });
    assertSuperseded(await harness.reports.waitFor(first, 30_000), second, 'feature/z');
    // The agent resets the branch to the first commit and announces it again: it is the tip now.
    await harness.announce({ sha: first, repositoryUrl: repo.url, branch: 'feature/z', at: t + 2000 });
    const verdict = await harness.reports.waitFor(first, 240_000, 2);
    assert.equal(verdict.status, 'PASSED', verdict.error);
    assert.equal(verdict.supersededBy, '');
  });
});

describe('which branches: CANCEL_SUPERSEDED_BRANCHES and CANCEL_SUPERSEDED=off', () => {
  const cases: Array<{ env: Record<string, string>; canceled: string[]; kept: string[] }> = [
    {
      env: { CANCEL_SUPERSEDED_BRANCHES: 'feature/*,!feature/keep-*' },
      canceled: ['feature/a'],
      kept: ['feature/keep-1', 'fix/z', 'main'],
    },
    { env: { CANCEL_SUPERSEDED: 'off', CANCEL_SUPERSEDED_BRANCHES: '*' }, canceled: [], kept: ['feature/a'] },
  ];
  for (const { env, canceled, kept } of cases) {
    test(`${JSON.stringify(env)}: cancels on ${canceled.join(', ') || 'no branch'}, not on ${kept.join(', ')}`, async () => {
      const harness = await createRunnerHarness('supersede-branches', env);
      const redis = connectRedis(harness.space.config.redis.url);
      const queue = new Queue(harness.space.config.queueName, { connection: redis });
      try {
        await harness.startBridge();
        const repo = await harness.newRepo('branches');
        const t = Date.now();
        const pairs = new Map<string, [string, string]>();
        for (const branch of [...canceled, ...kept]) {
          const one = await repo.commit({ 'a.txt': `${branch} 1\n` }, 'one');
          const two = await repo.commit({ 'a.txt': `${branch} 2\n` }, 'two');
          repo.push(branch);
          pairs.set(branch, [one, two]);
          await harness.announce({ sha: one, repositoryUrl: repo.url, branch, at: t });
          await harness.announce({ sha: two, repositoryUrl: repo.url, branch, at: t + 1 });
        }
        const state = async (sha: string) => (await queue.getJob(buildJobId(sha)))?.getState();
        for (const branch of canceled) {
          const [one, two] = pairs.get(branch) as [string, string];
          assertSuperseded(await harness.reports.waitFor(one, 30_000), two, branch);
          assert.equal(await state(two), 'waiting');
        }
        const last = [...pairs.values()].at(-1)?.[1] as string;
        await until('the last announcement to be enqueued', async () => (await state(last)) === 'waiting');
        for (const branch of kept) {
          for (const sha of pairs.get(branch) as [string, string]) {
            assert.equal(await state(sha), 'waiting', `${branch} ${sha}`);
            assert.equal(harness.reports.received(sha).length, 0);
          }
        }
      } finally {
        await queue.close();
        redis.disconnect();
        await harness.close();
      }
    });
  }
});

describe('CANCEL_SUPERSEDED=running: two worker processes, the running build is aborted in whichever holds it', () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await createCluster('supersede-running', {
      REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:16379',
      KAFKA_BROKERS: process.env.KAFKA_BROKERS ?? '127.0.0.1:19092',
      CANCEL_SUPERSEDED: 'running',
      WORKER_CONCURRENCY: '1',
    });
    await cluster.start('bridge');
    await cluster.start('worker-a');
    await cluster.start('worker-b');
  });
  after(async () => {
    await cluster?.close();
  });

  const announce = (sha: string, at: number) =>
    cluster.sendRaw([
      {
        key: sha,
        value: encodeCommitResult({
          taskId: `t-${sha.slice(0, 8)}`,
          commitSha: sha,
          branchName: 'feature/run',
          status: 'SUCCESS',
          repositoryUrl: cluster.repo.url,
        }),
        timestamp: at,
      },
    ]);

  test('the older build stops mid-test with its processes killed, is reported superseded, and the newer one builds', async () => {
    const t = Date.now();
    const slow = await cluster.commit(600);
    cluster.repo.push('feature/run');
    await announce(slow, t);
    const inTest = async () =>
      (await cluster.logLines('stage started')).some(
        (line) => line.commitSha === slow && line.stage === 'test',
      );
    await until('the slow build to reach its tests', inTest, 120_000);
    assert.ok((await cluster.strays()).length > 0, 'the slow build has processes running');

    const fast = await cluster.commit(0);
    cluster.repo.push('feature/run');
    await announce(fast, t + 1000);
    const report = await cluster.reports.waitFor(slow, 60_000);
    assertSuperseded(report, fast, 'feature/run');
    assert.ok(report.durationMs > 0);
    const built = await cluster.reports.waitFor(fast, 120_000);
    assert.equal(built.status, 'PASSED', built.error);

    // The worker process that started the slow build is the one that canceled it.
    const [started] = (await cluster.logLines('build started')).filter((line) => line.commitSha === slow);
    const canceled = (await cluster.logLines('build superseded; canceled while running')).filter(
      (line) => line.commitSha === slow,
    );
    assert.equal(canceled.length, 1);
    assert.equal(canceled[0]?.pid, started?.pid);
    await until('no build process left', async () => (await cluster.strays()).length === 0, 10_000);
    assert.equal((await cluster.builds()).get(slow), undefined, 'the slow build never finished');

    // Its CommitResult delivered again does not build it again.
    await announce(slow, t);
    assertSuperseded(await cluster.reports.waitFor(slow, 30_000, 2), fast, 'feature/run');
    await sleep(2_000);
    const starts = (await cluster.logLines('build started')).filter((line) => line.commitSha === slow);
    assert.equal(starts.length, 1);
  });
});
