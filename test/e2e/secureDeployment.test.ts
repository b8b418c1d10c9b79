import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import kafkajs from 'kafkajs';
import { startGitServer } from '../../src/git/gitServer.js';
import { createFixtureRepo, type FixtureRepo } from '../support/fixtureRepo.js';
import { freePort } from '../support/freePort.js';
import { cleanProject } from '../support/pythonProject.js';

const run = promisify(execFile);
const { Kafka, logLevel } = kafkajs;

// The authenticated deployment on the real services: Kafka with SASL/SCRAM, StandardAuthorizer and per-role ACLs,
// Redis with one ACL user per role and no default user (scripts/services.sh with CI_RUNNER_SECURE=1), and the
// bridge, a worker and the CLI each with its own role's credentials only.
describe('the authenticated deployment', () => {
  let dir: string;
  let env: Record<string, string>;
  let credentials: string;
  let git: Awaited<ReturnType<typeof startGitServer>>;
  let repo: FixtureRepo;
  let sha: string;
  const processes: ChildProcess[] = [];
  const password = (name: string) => readFile(join(credentials, name), 'utf8');

  // A role's environment: Kafka and Redis users of that name, passwords from their files (Docker-secrets style).
  const as = (role: { kafka?: string; redis?: string }): Record<string, string> => ({
    ...env,
    ...(role.kafka
      ? {
          KAFKA_SASL_MECHANISM: 'scram-sha-256',
          KAFKA_SASL_USERNAME: role.kafka,
          KAFKA_SASL_PASSWORD_FILE: join(credentials, `kafka-${role.kafka}`),
        }
      : {}),
    ...(role.redis
      ? { REDIS_USERNAME: role.redis, REDIS_PASSWORD_FILE: join(credentials, `redis-${role.redis}`) }
      : {}),
  });

  const cli = (args: string[], roleEnv: Record<string, string>) =>
    run('node', ['--import', 'tsx', 'src/cli/main.ts', ...args], { env: roleEnv, timeout: 240_000 }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (error: { code?: number; stdout?: string; stderr?: string }) => ({
        code: error.code ?? -1,
        stdout: error.stdout ?? '',
        stderr: error.stderr ?? '',
      }),
    );

  // Starts a runner process and waits until its metrics server says it is ready.
  const start = async (main: string, roleEnv: Record<string, string>, portName: string) => {
    const port = await freePort();
    const child = spawn('node', ['--import', 'tsx', main], {
      env: { ...roleEnv, [portName]: String(port) },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    processes.push(child);
    let said = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      said += chunk.toString();
    });
    for (let waited = 0; ; waited += 250) {
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ready) return;
      assert.equal(child.exitCode, null, `${main} exited: ${said}`);
      assert.ok(waited < 120_000, `${main} never became ready: ${said}`);
      await new Promise((done) => setTimeout(done, 250));
    }
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ci-runner-secure-'));
    const [redisPort, kafkaPort, controllerPort] = [await freePort(), await freePort(), await freePort()];
    const services = {
      ...process.env,
      CI_RUNNER_SECURE: '1',
      CI_RUNNER_SERVICES_DIR: join(dir, 'services'),
      CI_RUNNER_REDIS_PORT: String(redisPort),
      CI_RUNNER_KAFKA_PORT: String(kafkaPort),
      CI_RUNNER_KAFKA_CONTROLLER_PORT: String(controllerPort),
    } as Record<string, string>;
    env = services;
    await run('bash', ['scripts/services.sh', 'up'], { env: services, timeout: 300_000 });
    credentials = join(dir, 'services', 'credentials');
    await mkdir(join(dir, 'served'));
    git = await startGitServer(join(dir, 'served'));
    repo = await createFixtureRepo(join(dir, 'served'), git.baseUrl, 'secure');
    sha = await repo.commit(cleanProject(), 'a clean project');
    repo.push('main');
    env = {
      ...services,
      REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      KAFKA_BROKERS: `127.0.0.1:${kafkaPort}`,
      ARTEFACT_DIR: join(dir, 'artefacts'),
      WORK_DIR: join(dir, 'work'),
      CACHE_DIR: process.env.CI_RUNNER_TEST_CACHE_DIR ?? resolve('.cache/test'),
      WORKER_CONCURRENCY: '1',
      LOG_LEVEL: 'warn',
    };
    for (const name of ['REDIS_USERNAME', 'REDIS_PASSWORD', 'KAFKA_SASL_USERNAME', 'KAFKA_SASL_PASSWORD'])
      delete env[name];
    await start('src/bridge/main.ts', as({ kafka: 'bridge', redis: 'bridge' }), 'BRIDGE_METRICS_PORT');
    await start('src/worker/main.ts', as({ kafka: 'worker', redis: 'worker' }), 'WORKER_METRICS_PORT');
  });

  after(async () => {
    for (const child of processes) if (child.exitCode === null) child.kill('SIGKILL');
    await repo?.cleanup();
    await git?.close();
    if (env)
      await run('bash', ['scripts/services.sh', 'down'], { env, timeout: 120_000 }).catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('a build runs end to end, each process with its own role', async () => {
    const enqueued = await cli(
      ['enqueue', '--repo', repo.url, '--sha', sha, '--branch', 'main'],
      as({ kafka: 'orchestrator' }),
    );
    assert.equal(enqueued.code, 0, enqueued.stderr);
    assert.match(enqueued.stdout, new RegExp(`^PASSED  ${sha}`));
    const status = await cli(['status'], as({ redis: 'cli' }));
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`${sha}  completed`));
  });

  test('only the bridge and the workers may write build-reports', async () => {
    const report = { topic: 'build-reports', messages: [{ key: sha, value: 'a forged PASSED' }] };
    const producer = async (user: string) =>
      new Kafka({
        clientId: 'forger',
        brokers: [env.KAFKA_BROKERS as string],
        sasl: { mechanism: 'scram-sha-256', username: user, password: await password(`kafka-${user}`) },
        logLevel: logLevel.NOTHING,
        retry: { retries: 0 },
      }).producer();
    const orchestrator = await producer('orchestrator');
    await orchestrator.connect();
    await assert.rejects(orchestrator.send(report), /not authorized|TOPIC_AUTHORIZATION_FAILED/i);
    await orchestrator.disconnect();
    // Without credentials, the broker does not even talk.
    const anonymous = new Kafka({
      clientId: 'anonymous',
      brokers: [env.KAFKA_BROKERS as string],
      logLevel: logLevel.NOTHING,
      retry: { retries: 0 },
      connectionTimeout: 3_000,
    }).producer();
    await assert.rejects(anonymous.connect().then(() => anonymous.send(report)));
    await anonymous.disconnect();
  });

  test("the board and CLI users read the queue but cannot run a worker's scripts; no default user", async () => {
    const queueName = 'builds';
    for (const user of ['board', 'cli']) {
      const connection = new Redis(env.REDIS_URL as string, {
        username: user,
        password: await password(`redis-${user}`),
        maxRetriesPerRequest: null,
      });
      const queue = new Queue(queueName, { connection, skipMetasUpdate: true });
      const worker = new Worker(queueName, undefined, { connection, autorun: false, skipVersionCheck: true });
      try {
        const counts = await queue.getJobCounts('completed');
        assert.ok((counts.completed ?? 0) >= 1, `${user} reads the counts`);
        // A worker's moveToActive, as this user: refused at the first command it would write with.
        const refused = /NOPERM|can't run this command/;
        await assert.rejects(worker.getNextJob('board-token'), refused, `${user} cannot take a job`);
        await assert.rejects(queue.add('forged', { commitSha: sha }), refused, `${user} cannot add a job`);
      } finally {
        await worker.close();
        await queue.close();
        connection.disconnect();
      }
    }
    // No user at all: the default user is off, so nothing but AUTH is answered.
    const anonymous = new Redis(env.REDIS_URL as string, {
      lazyConnect: true,
      enableReadyCheck: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    try {
      await anonymous.connect();
      await assert.rejects(anonymous.get('ci-runner:builds:outbox'), /NOAUTH/);
    } finally {
      anonymous.disconnect();
    }
  });

  // A hang would end at the command's time limit, killed, with another exit code.
  test('a wrong password is one line and an exit code, not a hang', async () => {
    for (const [args, roleEnv, refused] of [
      [
        ['enqueue', '--repo', repo.url, '--sha', sha, '--branch', 'main'],
        { ...as({ kafka: 'orchestrator' }), KAFKA_SASL_PASSWORD_FILE: '', KAFKA_SASL_PASSWORD: 'wrong' },
        /^ci-runner enqueue: Kafka at [^ ]+ refused user "orchestrator" \(scram-sha-256\) to .*: authentication failed/,
      ],
      [
        ['status'],
        { ...as({ redis: 'cli' }), REDIS_PASSWORD_FILE: '', REDIS_PASSWORD: 'wrong' },
        /^ci-runner status: Redis at [^ ]+ refused user "cli": WRONGPASS/,
      ],
    ] as const) {
      const answer = await cli([...args], { ...roleEnv });
      assert.equal(answer.code, 78, answer.stderr);
      assert.equal(answer.stderr.trim().split('\n').length, 1, answer.stderr);
      assert.match(answer.stderr, refused);
      assert.ok(!answer.stderr.includes('wrong'), 'the password is not repeated');
    }
  });
});
