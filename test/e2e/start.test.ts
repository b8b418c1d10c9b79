import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freePort } from '../support/freePort.js';
import { createTestSpace, type TestSpace } from '../support/harness.js';

interface Started {
  child: ChildProcess;
  output: () => string;
}

// The processes whose environment carries the marker: everything one `npm start` started, Redis included.
async function marked(marker: string): Promise<number[]> {
  const found: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const environ = await readFile(`/proc/${name}/environ`, 'latin1').catch(() => '');
    if (environ.split('\0').includes(marker)) found.push(Number(name));
  }
  return found;
}

// `npm start` as a user runs it in a terminal: its own process group (with `| cat` after it, when piped), a signal
// sent to the whole group as the terminal sends it.
describe('npm start', () => {
  let space: TestSpace;
  const children: ChildProcess[] = [];

  before(async () => {
    space = await createTestSpace();
  });

  after(async () => {
    for (const child of children) {
      // A group that is already gone (a signal ended it: exitCode stays null) has nothing left to kill.
      if (child.exitCode !== null || child.signalCode !== null || !child.pid) continue;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    await space?.cleanup();
  });

  const start = async (env: Record<string, string | undefined>, piped: boolean): Promise<Started> => {
    const { config } = space;
    const script = resolve('scripts/start.sh');
    const child = spawn('bash', piped ? ['-c', `bash ${script} | cat`] : [script], {
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
        WORKER_METRICS_PORT: String(await freePort()),
        BRIDGE_METRICS_PORT: String(await freePort()),
        BOARD_PORT: String(await freePort()),
        LOG_PRETTY: 'false',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    for (let waited = 0; !output.includes('ci-runner is running'); waited += 200) {
      assert.ok(waited < 240_000, `never announced readiness:\n${output}`);
      assert.equal(child.exitCode, null, `npm start exited:\n${output}`);
      await new Promise((done) => setTimeout(done, 200));
    }
    return { child, output: () => output };
  };

  const stopWith = async ({ child, output }: Started, signal: NodeJS.Signals) => {
    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    process.kill(-(child.pid as number), signal);
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      exited,
      new Promise<'late'>((done) => {
        timer = setTimeout(() => done('late'), 90_000);
      }),
    ]).finally(() => clearTimeout(timer));
    assert.notEqual(code, 'late', `still running 90 s after ${signal}:\n${output().slice(-2000)}`);
  };

  test('says it is running only once the worker is ready, and one Ctrl-C drains everything', async () => {
    const started = await start({}, false);
    const port = /worker http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(started.output())?.[1];
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    assert.equal(ready.status, 200, 'the worker is ready when "running" is printed');
    await stopWith(started, 'SIGINT');
    assert.doesNotMatch(started.output(), /second signal/, 'one Ctrl-C is one signal to each process');
    const shutdowns = started
      .output()
      .split('\n')
      .filter((line) => line.includes('"msg":"shutting down"'));
    assert.equal(shutdowns.length, 3, 'bridge, worker and board each drained');
  });

  // With no REDIS_URL it starts a Redis of its own (here in a directory and on a port of the test's): closing the
  // terminal, a SIGTERM or a Ctrl-C stop it, and the bridge, worker and board, with or without a pipe after it.
  const cases: Array<[NodeJS.Signals, boolean]> = [
    ['SIGHUP', true],
    ['SIGHUP', false],
    ['SIGTERM', true],
    ['SIGINT', true],
  ];
  for (const [signal, piped] of cases) {
    test(`${signal}${piped ? ' with `| cat` after it' : ''}: everything it started stops, its own Redis included`, async () => {
      const marker = `CI_RUNNER_START_MARK=${randomUUID()}`;
      const services = await mkdtemp(join(tmpdir(), 'start-services-'));
      try {
        const started = await start(
          {
            REDIS_URL: undefined,
            CI_RUNNER_SERVICES_DIR: services,
            CI_RUNNER_REDIS_PORT: String(await freePort()),
            [marker.split('=')[0] as string]: marker.split('=')[1],
          },
          piped,
        );
        assert.match(started.output(), /starting Redis on 127\.0\.0\.1:/);
        const before = await marked(marker);
        assert.ok(before.length >= 4, `Redis, bridge, worker and board carry the marker: ${before.length}`);
        await stopWith(started, signal);
        let left = await marked(marker);
        for (let waited = 0; left.length > 0 && waited < 15_000; waited += 250) {
          await new Promise((done) => setTimeout(done, 250));
          left = await marked(marker);
        }
        assert.deepEqual(left, [], `left running after ${signal}:\n${started.output().slice(-2000)}`);
      } finally {
        await rm(services, { recursive: true, force: true });
      }
    });
  }
});
