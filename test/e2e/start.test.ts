import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freePort } from '../support/freePort.js';
import { createTestSpace, type TestSpace } from '../support/harness.js';

// `npm start` as a user runs it in a terminal: its own process group, Ctrl-C sent to the whole group.
describe('npm start', () => {
  let space: TestSpace;
  let child: ChildProcess;
  let output = '';
  let workerPort: number;

  before(async () => {
    space = await createTestSpace();
    workerPort = await freePort();
    const { config } = space;
    child = spawn('bash', [resolve('scripts/start.sh')], {
      detached: true,
      env: {
        ...process.env,
        REDIS_URL: config.redis.url,
        KAFKA_BROKERS: config.kafka.brokers.join(','),
        TOPIC_COMMIT_RESULTS: config.topicCommitResults,
        TOPIC_BUILD_REPORTS: config.topicBuildReports,
        TOPIC_DEAD_LETTER: config.topicDeadLetter,
        KAFKA_GROUP_ID: config.kafkaGroupId,
        QUEUE_NAME: config.queueName,
        CACHE_DIR: config.cacheDir,
        ARTEFACT_DIR: config.artefactDir,
        WORK_DIR: config.workDir,
        WORKER_METRICS_PORT: String(workerPort),
        BRIDGE_METRICS_PORT: String(await freePort()),
        BOARD_PORT: String(await freePort()),
        LOG_PRETTY: 'false',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
  });

  after(async () => {
    if (child.exitCode === null && child.pid) process.kill(-child.pid, 'SIGKILL');
    await space?.cleanup();
  });

  test('says it is running only once the worker is ready, and one Ctrl-C drains everything', async () => {
    for (let waited = 0; !output.includes('ci-runner is running'); waited += 200) {
      assert.ok(waited < 240_000, `never announced readiness:\n${output}`);
      assert.equal(child.exitCode, null, `npm start exited:\n${output}`);
      await new Promise((done) => setTimeout(done, 200));
    }
    const ready = await fetch(`http://127.0.0.1:${workerPort}/readyz`);
    assert.equal(ready.status, 200, 'the worker is ready when "running" is printed');

    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    process.kill(-(child.pid as number), 'SIGINT');
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      exited,
      new Promise<'late'>((done) => {
        timer = setTimeout(() => done('late'), 90_000);
      }),
    ]).finally(() => clearTimeout(timer));
    assert.notEqual(code, 'late', `still running 90 s after Ctrl-C:\n${output.slice(-2000)}`);
    assert.doesNotMatch(output, /second signal/, 'one Ctrl-C is one signal to each process');
    const shutdowns = output.split('\n').filter((line) => line.includes('"msg":"shutting down"'));
    assert.equal(shutdowns.length, 3, 'bridge, worker and board each drained');
  });
});
