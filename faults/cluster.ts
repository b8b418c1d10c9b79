import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { encodeCommitResult } from '../src/delivery/contracts.js';
import {
  connectPublisher,
  type IncomingMessage,
  type OutgoingMessage,
  type Publisher,
  subscribe,
} from '../src/delivery/kafka.js';
import { type GitServer, startGitServer } from '../src/git/gitServer.js';
import { createLogger, type Logger } from '../src/ops/logger.js';
import { releaseBuildDisksUnder } from '../src/sandbox/buildDisk.js';
import { createFixtureRepo, type FixtureRepo } from '../test/support/fixtureRepo.js';
import { collectReports, type ReportCollector } from '../test/support/reportCollector.js';
import { setTopicConfig } from '../test/support/setTopicConfig.js';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..');
export const SERVICES = resolve(ROOT, '.services/faults');
const REDIS_PORT = '16390';
const KAFKA_PORT = '19192';

const servicesEnv = {
  ...process.env,
  CI_RUNNER_SERVICES_DIR: SERVICES,
  CI_RUNNER_REDIS_PORT: REDIS_PORT,
  CI_RUNNER_KAFKA_PORT: KAFKA_PORT,
  CI_RUNNER_KAFKA_CONTROLLER_PORT: '19193',
};

// Runs scripts/services.sh against the fault suite's own Redis and Kafka (never the ones other tests use).
export async function services(action: string): Promise<void> {
  await run('bash', [join(ROOT, 'scripts/services.sh'), action], { env: servicesEnv });
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One ci-runner process (bridge or worker) started as users start it, logging JSON lines to a file. */
export interface Part {
  name: string;
  child: ChildProcess;
  logFile: string;
}

/** Real bridge and worker processes, a git server with a fixture repository, an agent and an orchestrator. */
export interface Cluster {
  env: Record<string, string>;
  repo: FixtureRepo;
  parts: Map<string, Part>;
  reports: ReportCollector;
  logger: Logger;
  start(name: 'bridge' | `worker${string}`): Promise<Part>;
  kill(name: string, signal?: NodeJS.Signals): Promise<void>;
  /** Commits a small project whose fast test sleeps for `seconds`, returning its sha. */
  commit(seconds: number): Promise<string>;
  /** Produces a CommitResult, retrying while Kafka is away; resolves once Kafka has it. */
  announce(sha: string, override?: Buffer): Promise<void>;
  /** Produces raw records (any key, or none; any timestamp) to the commit-results topic in one batch. */
  sendRaw(records: OutgoingMessage[]): Promise<void>;
  /** Every record that reached the dead-letter topic so far. */
  deadLetters: IncomingMessage[];
  /** The bridge's Prometheus scrape. */
  bridgeMetrics(): Promise<string>;
  /** Finished builds per sha, read from every worker's log. */
  builds(): Promise<Map<string, number>>;
  /** The log lines (parsed) of the workers, or of the parts whose name starts with `part`, with this message (or
   * with a message containing it), in the order each part wrote them. */
  logLines(message: string, part?: string, contains?: boolean): Promise<Array<Record<string, string>>>;
  /** Processes still running for this cluster's builds. */
  strays(): Promise<string[]>;
  close(): Promise<void>;
}

// topicConfig: configuration of the commit-results topic (say, a larger max.message.bytes than the dead-letter topic's).
export async function createCluster(
  name: string,
  overrides: Record<string, string> = {},
  topicConfig?: Record<string, string>,
): Promise<Cluster> {
  const id = `${name}-${randomUUID().slice(0, 6)}`;
  const dir = await mkdtemp(join(tmpdir(), `ci-runner-faults-${id}-`));
  const served = join(dir, 'served');
  await mkdir(served);
  const git: GitServer = await startGitServer(served);
  const repo = await createFixtureRepo(served, git.baseUrl, 'project');
  const logger = createLogger({
    level: process.env.FAULTS_LOG_LEVEL ?? 'fatal',
    pretty: false,
    name: 'faults',
  });
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    REDIS_URL: `redis://127.0.0.1:${REDIS_PORT}`,
    KAFKA_BROKERS: `127.0.0.1:${KAFKA_PORT}`,
    TOPIC_COMMIT_RESULTS: `commit-results-${id}`,
    TOPIC_BUILD_REPORTS: `build-reports-${id}`,
    TOPIC_DEAD_LETTER: `commit-results-${id}.dlq`,
    KAFKA_GROUP_ID: `bridge-${id}`,
    QUEUE_NAME: `builds-${id}`,
    ARTEFACT_DIR: join(dir, 'artefacts'),
    CACHE_DIR: process.env.CI_RUNNER_TEST_CACHE_DIR ?? resolve(ROOT, '.cache/test'),
    WORK_DIR: join(dir, 'work'),
    WORKER_CONCURRENCY: '2',
    WORKER_METRICS_PORT: '0',
    BRIDGE_METRICS_PORT: '0',
    WORKER_LOCK_SEC: '4',
    DRAIN_GRACE_SEC: '5',
    BUILD_ATTEMPTS: '6',
    LOG_LEVEL: 'info',
    LOG_PRETTY: 'false',
    ...overrides,
  };
  const parts = new Map<string, Part>();
  const agent: Publisher = await connectPublisher([env.KAFKA_BROKERS as string], 'fault-agent', logger);
  const { ensureTopics } = await import('../src/delivery/kafkaTopics.js');
  await ensureTopics(
    [env.KAFKA_BROKERS as string],
    [env.TOPIC_COMMIT_RESULTS as string, env.TOPIC_BUILD_REPORTS as string, env.TOPIC_DEAD_LETTER as string],
    logger,
  );
  if (topicConfig) {
    await setTopicConfig([env.KAFKA_BROKERS as string], env.TOPIC_COMMIT_RESULTS as string, topicConfig);
  }
  const reports = await collectReports(
    [env.KAFKA_BROKERS as string],
    env.TOPIC_BUILD_REPORTS as string,
    logger,
  );
  const deadLetters: IncomingMessage[] = [];
  const dlq = await subscribe({
    brokers: [env.KAFKA_BROKERS as string],
    clientId: 'fault-dlq',
    groupId: `dlq-${id}`,
    topic: env.TOPIC_DEAD_LETTER as string,
    startAt: 'earliest',
    logger,
    onMessage: async (message) => void deadLetters.push(message),
  });
  let generation = 0;
  await repo.commit(
    { 'pyproject.toml': '[tool.pytest.ini_options]\nmarkers = ["fast: quick"]\n', 'tests/__init__.py': '' },
    'base',
  );
  repo.push('main');

  const cluster: Cluster = {
    env,
    repo,
    parts,
    reports,
    logger,
    deadLetters,
    async sendRaw(records) {
      await agent.send(env.TOPIC_COMMIT_RESULTS as string, records);
    },
    async bridgeMetrics() {
      const bridge = parts.get('bridge');
      const log = bridge ? await readFile(bridge.logFile, 'utf8') : '';
      const started = log.split('\n').find((line) => line.includes('"bridge started"'));
      const url = started ? (JSON.parse(started) as { metrics: string }).metrics : undefined;
      if (!url) throw new Error('the bridge has not started');
      return (await fetch(`${url}/metrics`)).text();
    },
    async start(partName) {
      generation += 1;
      const logFile = join(dir, `${partName}-${generation}.log`);
      const fd = openSync(logFile, 'a');
      const entry = partName === 'bridge' ? 'src/bridge/main.ts' : 'src/worker/main.ts';
      const child = spawn('node', ['--import', 'tsx', entry], { cwd: ROOT, env, stdio: ['ignore', fd, fd] });
      closeSync(fd);
      const part = { name: partName, child, logFile };
      parts.set(partName, part);
      for (let waited = 0; waited < 60_000; waited += 100) {
        const log = await readFile(logFile, 'utf8').catch(() => '');
        if (log.includes('bridge started') || log.includes('worker started')) return part;
        if (child.exitCode !== null) throw new Error(`${partName} exited at start-up:\n${log}`);
        await sleep(100);
      }
      throw new Error(`${partName} did not start`);
    },
    async kill(partName, signal = 'SIGKILL') {
      const part = parts.get(partName);
      if (!part || part.child.exitCode !== null) return;
      const exited = new Promise((resolve) => part.child.once('exit', resolve));
      part.child.kill(signal);
      if (signal === 'SIGKILL' || signal === 'SIGTERM') await exited;
    },
    async commit(seconds) {
      const nonce = randomUUID();
      const sha = await repo.commit(
        {
          'tests/test_work.py': [
            'import time',
            '',
            'import pytest',
            '',
            '',
            '@pytest.mark.fast',
            'def test_work():',
            `    time.sleep(${seconds})  # ${nonce}`,
            '',
          ].join('\n'),
        },
        `work ${nonce}`,
      );
      repo.push('main');
      return sha;
    },
    async announce(sha, override) {
      const value =
        override ??
        encodeCommitResult({
          taskId: `t-${sha.slice(0, 8)}`,
          commitSha: sha,
          branchName: 'main',
          status: 'SUCCESS',
          repositoryUrl: repo.url,
        });
      for (;;) {
        try {
          await agent.send(env.TOPIC_COMMIT_RESULTS as string, [{ key: sha, value }]);
          return;
        } catch {
          await sleep(500);
        }
      }
    },
    async builds() {
      const counts = new Map<string, number>();
      for (const part of [...(await readdirLogs(dir))]) {
        for (const line of (await readFile(part, 'utf8')).split('\n')) {
          if (!line.includes('"build finished"')) continue;
          const sha = (JSON.parse(line) as { commitSha: string }).commitSha;
          counts.set(sha, (counts.get(sha) ?? 0) + 1);
        }
      }
      return counts;
    },
    async logLines(message, part = 'worker', contains = false) {
      const lines: Array<Record<string, string>> = [];
      for (const file of await readdirLogs(dir, part)) {
        for (const line of (await readFile(file, 'utf8')).split('\n')) {
          if (!line.startsWith('{')) continue;
          const entry = JSON.parse(line) as Record<string, string>;
          if (contains ? entry.msg?.includes(message) : entry.msg === message) lines.push(entry);
        }
      }
      return lines;
    },
    // Processes of builds: anything naming the work directory (the sandbox's bwrap), or running as a build user.
    async strays() {
      const { stdout } = await run('ps', ['-eo', 'pid=,uid=,args=']);
      const base = Number(env.SANDBOX_UID_BASE ?? 800_000);
      return stdout.split('\n').filter((line) => {
        const uid = Number(line.trim().split(/\s+/)[1]);
        const buildUser = uid >= base && uid < base + 65_536;
        return (buildUser || line.includes(env.WORK_DIR as string)) && !line.includes('ps -eo');
      });
    },
    async close() {
      for (const part of parts.values()) if (part.child.exitCode === null) part.child.kill('SIGKILL');
      await Promise.all([reports.close(), agent.close(), dlq.close()]).catch(() => undefined);
      await git.close();
      await repo.cleanup();
      // Killed workers' builds may still have their filesystems mounted (no later worker reaped them).
      await releaseBuildDisksUnder(dir);
      await rm(dir, { recursive: true, force: true });
    },
  };
  return cluster;
}

async function readdirLogs(dir: string, part = 'worker'): Promise<string[]> {
  const { readdir } = await import('node:fs/promises');
  return (await readdir(dir))
    .filter((name) => name.startsWith(part) && name.endsWith('.log'))
    .sort()
    .map((name) => join(dir, name));
}
