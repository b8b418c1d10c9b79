import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { describe, test } from 'node:test';
import { describeScale, runScale, type ScaleResult } from '../../bench/scaleSimulation.js';
import { cleanProject } from '../support/pythonProject.js';

// The bounded run of `npm run scale`: three small repositories instead of six real ones, nine commits in bursts of
// three, three worker hosts (each its own process and CACHE_DIR) sharing this suite's Redis and Kafka.
describe('many hosts (bounded `npm run scale`): every commit reported once, with and without placement', () => {
  const run = (placement: 'cache' | 'off') =>
    runScale({
      projects: ['alpha', 'beta', 'gamma'].map((name) => ({
        name,
        tree: { ...cleanProject(), 'NAME.txt': `${name}\n` },
      })),
      commits: 9,
      burst: 3,
      gapMs: 6_000,
      hosts: 3,
      placement,
      sharedCache: process.env.CI_RUNNER_TEST_CACHE_DIR ?? resolve('.cache/test'),
      env: {
        REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:16379',
        KAFKA_BROKERS: process.env.KAFKA_BROKERS ?? '127.0.0.1:19092',
      },
      timeoutMs: 300_000,
    });

  // A build is warm exactly when its host built its repository before it (in this run, from empty caches).
  const assertWarmMeansBuiltThere = (result: ScaleResult) => {
    const seen = new Set<string>();
    const byStart = [...result.builds].sort(
      (a, b) => a.reportedAt - a.report.durationMs - (b.reportedAt - b.report.durationMs),
    );
    for (const build of byStart) {
      const where = `${build.report.workerHost} ${build.project}`;
      assert.equal(build.report.warm, seen.has(where), `${where}: ${build.commitSha}`);
      seen.add(where);
    }
  };

  for (const placement of ['off', 'cache'] as const) {
    test(`placement ${placement}`, async () => {
      const result = await run(placement);
      console.log(describeScale(result));
      assert.equal(result.reported, result.sent, 'every commit reported');
      assert.equal(result.duplicated, 0, 'no commit reported twice');
      const notPassed = result.builds.filter((b) => b.report.status !== 'PASSED');
      assert.deepEqual(
        notPassed.map((b) => `${b.project} ${b.report.status}: ${b.report.error}`),
        [],
      );
      for (const b of result.builds) assert.match(b.report.workerHost, /^host-[123]$/);
      assertWarmMeansBuiltThere(result);
      assert.ok(result.idleWhileWaitingSec >= 0 && Number.isFinite(result.buildsPerMinute));
    });
  }
});
