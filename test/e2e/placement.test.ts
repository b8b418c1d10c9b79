import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Queue } from 'bullmq';
import { sleep } from '../../faults/cluster.js';
import type { BuildReport } from '../../src/delivery/contracts.js';
import { Placement } from '../../src/delivery/placement.js';
import { type BuildJobData, buildJobId, connectRedis } from '../../src/delivery/queue.js';
import type { FixtureRepo } from '../support/fixtureRepo.js';
import { hostCacheDir } from '../support/hostCache.js';
import { cleanProject } from '../support/pythonProject.js';
import { createRunnerHarness, type RunnerHarness } from '../support/runnerHarness.js';
import { scrapedValue } from '../support/scrapedValue.js';

const HOSTS = ['host-a', 'host-b', 'host-c'];

// A project whose one fast test sleeps `seconds` (a long build keeps its host busy).
function project(note: string, seconds = 0): Record<string, string> {
  return {
    ...cleanProject(),
    'NOTE.md': `${note}\n`,
    'tests/test_wait.py': [
      'import time',
      '',
      'import pytest',
      '',
      '',
      '@pytest.mark.fast',
      'def test_wait():',
      `    time.sleep(${seconds})`,
      '',
    ].join('\n'),
  };
}

describe('cache-aware placement: three worker hosts, each with its own caches', () => {
  let harness: RunnerHarness;
  let redis: ReturnType<typeof connectRedis>;
  let queue: Queue<BuildJobData>;
  let placement: Placement;
  let bridgeMetrics: string;
  const repos: FixtureRepo[] = [];
  /** The host that built each repository first. */
  const home = new Map<FixtureRepo, string>();

  const build = async (repo: FixtureRepo, note: string, seconds = 0): Promise<string> => {
    const sha = await repo.commit(project(note, seconds), note);
    repo.push('main');
    await harness.announce({ sha, repositoryUrl: repo.url });
    return sha;
  };
  const report = (sha: string): Promise<BuildReport> => harness.reports.waitFor(sha, 300_000);

  before(async () => {
    harness = await createRunnerHarness('placement', { WORKER_CONCURRENCY: '1' });
    const { config } = harness.space;
    redis = connectRedis(config.redis);
    queue = new Queue(config.queueName, { connection: redis });
    placement = new Placement(redis, config.queueName);
    bridgeMetrics = (await harness.startBridge()).metricsUrl;
    const shared = process.env.CI_RUNNER_TEST_CACHE_DIR ?? resolve('.cache/test');
    for (const host of HOSTS) {
      const cacheDir = await hostCacheDir(join(harness.space.dir, 'hosts', host), shared);
      await harness.startWorker({ workerHostId: host, cacheDir });
    }
    for (const name of ['alpha', 'beta', 'gamma']) repos.push(await harness.newRepo(name));
  });

  after(async () => {
    await queue?.close();
    redis?.disconnect();
    await harness?.close();
  });

  test("a repository's later builds run warm on the host that built it first", async () => {
    for (const repo of repos) {
      const first = await report(await build(repo, 'first'));
      assert.equal(first.status, 'PASSED', first.error);
      assert.ok(HOSTS.includes(first.workerHost), first.workerHost);
      assert.equal(first.warm, false, 'a new host has nothing of the repository');
      home.set(repo, first.workerHost);
    }
    for (const round of [1, 2]) {
      for (const repo of repos) {
        const sha = await build(repo, `round ${round}`);
        const later = await report(sha);
        assert.equal(later.status, 'PASSED', later.error);
        assert.equal(later.workerHost, home.get(repo), 'built on the host whose caches hold the repository');
        assert.equal(later.warm, true);
        // The shared queue's job stands for the build: placed on that host, completed with its report.
        const job = await queue.getJob(buildJobId(sha));
        assert.equal(job?.data.placedOn, home.get(repo));
        for (let waited = 0; (await job?.getState()) !== 'completed' && waited < 30_000; waited += 100) {
          await sleep(100);
        }
        assert.equal(await job?.getState(), 'completed');
        assert.deepEqual(harness.reports.received(sha).length, 1, 'one report');
      }
    }
  });

  test('while the warm host is busy, an idle host builds the repository at once (cold)', async () => {
    const [repo] = repos as [FixtureRepo];
    const warmHost = home.get(repo) as string;
    const slow = await build(repo, 'slow', 20);
    for (let waited = 0; waited < 120_000; waited += 100) {
      const hosts = await placement.liveHosts();
      if (hosts.find((h) => h.host === warmHost)?.free === 0) break;
      await sleep(100);
    }
    const quick = await build(repo, 'quick while busy');
    const quickReport = await report(quick);
    assert.equal(harness.reports.received(slow).length, 0, 'the quick build did not wait for the busy host');
    assert.equal(quickReport.status, 'PASSED', quickReport.error);
    assert.notEqual(quickReport.workerHost, warmHost);
    const slowReport = await report(slow);
    assert.equal(slowReport.workerHost, warmHost);
    assert.equal(slowReport.status, 'PASSED', slowReport.error);
    // Each commit built once: one report each, whichever copy of its job ran it.
    assert.equal(harness.reports.received(quick).length, 1);
    assert.equal(harness.reports.received(slow).length, 1);
    // The repository is now warm on both hosts: its next build goes to either, warm.
    const next = await report(await build(repo, 'after'));
    assert.ok([warmHost, quickReport.workerHost].includes(next.workerHost), next.workerHost);
    assert.equal(next.warm, true);

    // The bridge counted each decision: three first builds anywhere, the rest on an idle warm host but one.
    const scrape = await (await fetch(`${bridgeMetrics}/metrics`)).text();
    const placed = (how: string) => scrapedValue(scrape, `ci_builds_placed_total{placement="${how}"}`);
    assert.deepEqual([placed('anywhere'), placed('warm_idle'), placed('warm_busy')], [3, 8, 1]);
  });
});
