import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { BuildReport } from '../../src/delivery/contracts.js';
import {
  type BuildJobData,
  connectRedis,
  createBuildQueue,
  RETENTION_SECONDS,
} from '../../src/delivery/queue.js';
import { ReportStore } from '../../src/delivery/reportStore.js';
import { jobLog } from '../../src/worker/jobLog.js';
import { createTestSpace, type TestSpace } from '../support/harness.js';

// How many builds, each printing 1 MiB of output into its job log: `REDIS_BOUND_BUILDS=2000` for the figure.
const BUILDS = Number(process.env.REDIS_BOUND_BUILDS ?? 200);
/** The bound the README states: what one finished build may keep in Redis with the default settings. */
const BOUND_PER_BUILD = 128 * 1024;

const usedMemory = async (redis: Redis) => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1]);

// Real BullMQ jobs on real Redis, each writing 1 MiB of build output through the worker's job-log writer and
// recording a report with 20 failed tests, as a worker does; the build itself is not run (only what Redis keeps).
describe('Redis stays bounded: job logs, reports and jobs of finished builds', () => {
  let space: TestSpace;
  let redis: Redis;
  before(async () => {
    space = await createTestSpace();
    redis = connectRedis(space.config.redis.url);
  });
  after(async () => {
    redis?.disconnect();
    await space?.cleanup();
  });

  test(`${BUILDS} builds with 1 MiB of output each keep at most ${BOUND_PER_BUILD / 1024} KiB each`, async (t) => {
    const { config } = space;
    const queue = createBuildQueue(config.queueName, redis, 1);
    const store = new ReportStore(redis, config.queueName, RETENTION_SECONDS);
    const line = `${'output '.repeat(146)}\n`;
    const before_ = await usedMemory(redis);
    const connection = connectRedis(config.redis.url);
    const worker = new Worker<BuildJobData, BuildReport>(
      config.queueName,
      async (job) => {
        const say = jobLog(job, { maxBytes: config.jobLogMaxBytes });
        for (let written = 0; written < 1024 * 1024; written += line.length) say(line);
        return store.record({
          commitSha: job.data.commitSha,
          status: 'FAILED',
          failedTests: Array.from({ length: 20 }, (_, i) => `tests/test_mod.py::test_case_${i}`),
          lintErrors: [],
          lineCoverage: 80,
          artefactUrl: `file:///artefacts/${job.data.commitSha}.tar.gz`,
          taskId: job.data.taskId,
          branchName: job.data.branchName,
          repositoryUrl: job.data.repositoryUrl,
          error: 'test: 20 test(s) failed',
          stages: [],
          artefactSha256: '',
          durationMs: 1,
          testsRun: 100,
          attempt: 1,
          sandbox: '',
          pythonVersion: '3.11',
          republished: false,
          flakyTests: [],
          supersededBy: '',
          testsSelected: 100,
          testsTotal: 100,
          artefactLink: '',
          workerHost: '',
          warm: false,
          failedTestsOmitted: 0,
          lintErrorsOmitted: 0,
          failures: [],
          lintFindings: [],
          failuresTruncated: 0,
        });
      },
      { connection, concurrency: 8 },
    );
    const failures: string[] = [];
    const done = new Promise<void>((resolve) => {
      let finished = 0;
      const count = () => {
        finished += 1;
        if (finished === BUILDS) resolve();
      };
      worker.on('completed', count);
      worker.on('failed', (_job, error) => {
        failures.push(error.message);
        count();
      });
    });
    const shas = Array.from({ length: BUILDS }, (_, i) => i.toString(16).padStart(40, '0'));
    await queue.addBulk(
      shas.map((sha) => ({
        name: 'build',
        data: {
          commitSha: sha,
          branchName: 'main',
          taskId: 't',
          repositoryUrl: 'http://example.invalid/r.git',
        },
        opts: { jobId: `build-${sha}` },
      })),
    );
    await done;
    await worker.close();
    connection.disconnect();
    assert.deepEqual(failures.slice(0, 3), [], 'every build recorded its report');
    const grew = (await usedMemory(redis)) - before_;
    const perBuild = grew / BUILDS;
    t.diagnostic(
      `${BUILDS} builds: Redis grew by ${(grew / 1024 / 1024).toFixed(1)} MiB, ${(perBuild / 1024).toFixed(1)} KiB each`,
    );
    assert.ok(perBuild < BOUND_PER_BUILD, `${(perBuild / 1024).toFixed(1)} KiB per build`);
    await queue.obliterate({ force: true });
    await queue.close();
  });
});
