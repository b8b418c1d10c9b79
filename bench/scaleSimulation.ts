// The many-hosts simulation of `npm run scale` (and its bounded run in `npm test`): a bridge and three worker "hosts"
// on this machine, each host its own worker process and its own CACHE_DIR, sharing Redis, Kafka and the S3 server; a
// workload of commits over several repositories arriving in bursts. Measures what placement changes.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type BuildReport, encodeCommitResult } from '../src/delivery/contracts.js';
import { connectPublisher } from '../src/delivery/kafka.js';
import { ensureTopics } from '../src/delivery/kafkaTopics.js';
import { startGitServer } from '../src/git/gitServer.js';
import { createLogger } from '../src/ops/logger.js';
import { createFixtureRepo, type Files, type FixtureRepo } from '../test/support/fixtureRepo.js';
import { hostCacheDir } from '../test/support/hostCache.js';
import { collectReports } from '../test/support/reportCollector.js';

const ROOT = resolve(import.meta.dirname, '..');

/** A repository of the workload: its first commit is a whole tree; each later commit adds one line to a file. */
export interface ScaleProject {
  name: string;
  /** A directory committed as it is, or files. */
  tree: string | Files;
}

export interface ScaleOptions {
  projects: ScaleProject[];
  /** Commits in all, spread over the projects in a fixed shuffled order. */
  commits: number;
  /** Commits announced at once; the next burst comes `gapMs` after. */
  burst: number;
  gapMs: number;
  hosts: number;
  placement: 'cache' | 'off';
  /** Where the runner's own Python tools are (shared by every host, as an image would). */
  sharedCache: string;
  /** The services and settings every process gets (REDIS_URL, KAFKA_BROKERS, ARTEFACT_STORE, PYTEST_MARK...). */
  env: Record<string, string>;
  /** How long to wait for the last report. */
  timeoutMs: number;
}

/** One commit of the workload and what became of it. */
export interface ScaleBuild {
  project: string;
  commitSha: string;
  announcedAt: number;
  reportedAt: number;
  report: BuildReport;
}

export interface ScaleResult {
  placement: 'cache' | 'off';
  sent: number;
  reported: number;
  /** Commits with more than one report. */
  duplicated: number;
  builds: ScaleBuild[];
  /** Builds that ran warm (git objects and environment cached on their host), of all builds. */
  hitRate: number;
  buildMs: { p50: number; p95: number };
  /** From announcement to report. */
  latencyMs: { p50: number; p95: number };
  buildsPerMinute: number;
  /** Host-seconds a host sat idle while a build waited to start (announced, not started). */
  idleWhileWaitingSec: number;
}

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

// A fixed shuffle (the same workload for every run): a linear congruential generator from a constant seed.
function shuffled<T>(items: T[]): T[] {
  const out = [...items];
  let seed = 20_261_128;
  for (let i = out.length - 1; i > 0; i--) {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
    const j = seed % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

// Host-seconds during which a host was idle while some build waited: the integral over time of
// min(idle hosts, waiting builds), a build waiting from its announcement until it started (report time minus its
// duration) and running until its report.
export function idleWhileWaiting(builds: ScaleBuild[], hosts: number): number {
  const events: Array<[number, 'wait' | 'start' | 'end']> = [];
  for (const build of builds) {
    const started = Math.max(build.announcedAt, build.reportedAt - build.report.durationMs);
    events.push([build.announcedAt, 'wait'], [started, 'start'], [build.reportedAt, 'end']);
  }
  events.sort((a, b) => a[0] - b[0]);
  let waiting = 0;
  let running = 0;
  let total = 0;
  let last = events[0]?.[0] ?? 0;
  for (const [at, kind] of events) {
    total += (at - last) * Math.min(waiting, Math.max(0, hosts - running));
    last = at;
    if (kind === 'wait') waiting += 1;
    else if (kind === 'start') {
      waiting -= 1;
      running += 1;
    } else running -= 1;
  }
  return total / 1000;
}

// Runs the workload once against fresh hosts (empty caches) and a fresh namespace, and measures it.
export async function runScale(options: ScaleOptions): Promise<ScaleResult> {
  const id = `scale-${randomUUID().slice(0, 6)}`;
  const dir = await mkdtemp(join(tmpdir(), `ci-runner-${id}-`));
  const logger = createLogger({ level: 'fatal', pretty: false, name: 'scale' });
  const served = join(dir, 'served');
  await mkdir(served);
  const git = await startGitServer(served);
  const children: ChildProcess[] = [];
  const closers: Array<() => Promise<unknown>> = [async () => git.close()];
  try {
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      TOPIC_COMMIT_RESULTS: `commit-results-${id}`,
      TOPIC_BUILD_REPORTS: `build-reports-${id}`,
      TOPIC_DEAD_LETTER: `commit-results-${id}.dlq`,
      KAFKA_GROUP_ID: `bridge-${id}`,
      QUEUE_NAME: `builds-${id}`,
      ARTEFACT_DIR: join(dir, 'artefacts'),
      WORK_DIR: join(dir, 'work'),
      WORKER_CONCURRENCY: '1',
      WORKER_METRICS_PORT: '0',
      BRIDGE_METRICS_PORT: '0',
      LOG_LEVEL: 'info',
      LOG_PRETTY: 'false',
      ...options.env,
      PLACEMENT: options.placement,
    };
    const brokers = [env.KAFKA_BROKERS as string];
    await ensureTopics(brokers, [env.TOPIC_COMMIT_RESULTS, env.TOPIC_BUILD_REPORTS].map(String), logger);
    const reports = await collectReports(brokers, env.TOPIC_BUILD_REPORTS as string, logger);
    closers.push(() => reports.close());
    const agent = await connectPublisher(brokers, 'scale-agent', logger);
    closers.push(() => agent.close());

    const start = async (name: string, entry: string, extra: Record<string, string> = {}) => {
      const logFile = join(dir, `${name}.log`);
      const fd = openSync(logFile, 'a');
      const child = spawn('node', ['--import', 'tsx', entry], {
        cwd: ROOT,
        env: { ...env, ...extra },
        stdio: ['ignore', fd, fd],
      });
      closeSync(fd);
      children.push(child);
      for (let waited = 0; waited < 300_000; waited += 200) {
        const log = await readFile(logFile, 'utf8').catch(() => '');
        if (log.includes('"bridge started"') || log.includes('"worker started"')) return;
        if (child.exitCode !== null) throw new Error(`${name} exited at start-up:\n${log.slice(-4000)}`);
        await sleep(200);
      }
      throw new Error(`${name} did not start`);
    };
    await start('bridge', 'src/bridge/main.ts');
    for (let h = 1; h <= options.hosts; h++) {
      const host = `host-${h}`;
      const cacheDir = await hostCacheDir(join(dir, 'hosts', host), options.sharedCache);
      await start(host, 'src/worker/main.ts', { WORKER_HOST_ID: host, CACHE_DIR: cacheDir });
    }

    const repos = new Map<string, FixtureRepo>();
    for (const project of options.projects) {
      const repo = await createFixtureRepo(served, git.baseUrl, project.name);
      if (typeof project.tree === 'string') repo.commitDir(project.tree, 'as published');
      else await repo.commit(project.tree, 'as published');
      repos.set(project.name, repo);
    }
    const order = shuffled(
      Array.from(
        { length: options.commits },
        (_, k) => options.projects[k % options.projects.length]?.name ?? '',
      ),
    );
    const builds: ScaleBuild[] = [];
    const pending: Array<Promise<void>> = [];
    const counts = new Map<string, number>();
    for (let next = 0; next < order.length; next += options.burst) {
      if (next > 0) await sleep(options.gapMs);
      const burst: Array<{ project: string; sha: string }> = [];
      for (const project of order.slice(next, next + options.burst)) {
        const repo = repos.get(project) as FixtureRepo;
        const n = (counts.get(project) ?? 0) + 1;
        counts.set(project, n);
        const sha = await repo.commit({ 'SCALE_NOTES.txt': `commit ${n} of ${project}\n` }, `change ${n}`);
        repo.push('main');
        burst.push({ project, sha });
      }
      const announcedAt = Date.now();
      await agent.send(
        env.TOPIC_COMMIT_RESULTS as string,
        burst.map(({ sha }) => ({
          key: sha,
          value: encodeCommitResult({
            taskId: `t-${sha.slice(0, 8)}`,
            commitSha: sha,
            branchName: 'main',
            status: 'SUCCESS',
            repositoryUrl: (repos.get(burst.find((b) => b.sha === sha)?.project ?? '') as FixtureRepo).url,
          }),
        })),
      );
      for (const { project, sha } of burst) {
        pending.push(
          reports.waitFor(sha, options.timeoutMs).then((report) => {
            builds.push({ project, commitSha: sha, announcedAt, reportedAt: Date.now(), report });
          }),
        );
      }
    }
    await Promise.all(pending);
    await sleep(2_000); // any second report of a commit would have arrived by now
    const duplicated = builds.filter((b) => reports.received(b.commitSha).length > 1).length;
    const first = Math.min(...builds.map((b) => b.announcedAt));
    const last = Math.max(...builds.map((b) => b.reportedAt));
    return {
      placement: options.placement,
      sent: order.length,
      reported: builds.length,
      duplicated,
      builds,
      hitRate: builds.filter((b) => b.report.warm).length / builds.length,
      buildMs: {
        p50: percentile(
          builds.map((b) => b.report.durationMs),
          50,
        ),
        p95: percentile(
          builds.map((b) => b.report.durationMs),
          95,
        ),
      },
      latencyMs: {
        p50: percentile(
          builds.map((b) => b.reportedAt - b.announcedAt),
          50,
        ),
        p95: percentile(
          builds.map((b) => b.reportedAt - b.announcedAt),
          95,
        ),
      },
      buildsPerMinute: (builds.length / (last - first)) * 60_000,
      idleWhileWaitingSec: idleWhileWaiting(builds, options.hosts),
    };
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
    await Promise.all(
      children.map((child) =>
        child.exitCode === null ? new Promise((done) => child.once('exit', done)) : undefined,
      ),
    );
    for (const close of closers.reverse()) await close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

// One line per run, for the console and the README.
export function describeScale(result: ScaleResult): string {
  const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
  return [
    `placement ${result.placement.padEnd(5)}`,
    `builds ${result.reported}/${result.sent} (duplicated ${result.duplicated})`,
    `cache hits ${pct(result.hitRate)}`,
    `build p50 ${(result.buildMs.p50 / 1000).toFixed(1)} s p95 ${(result.buildMs.p95 / 1000).toFixed(1)} s`,
    `latency p50 ${(result.latencyMs.p50 / 1000).toFixed(1)} s p95 ${(result.latencyMs.p95 / 1000).toFixed(1)} s`,
    `${result.buildsPerMinute.toFixed(1)} builds/min`,
    `idle while builds waited ${result.idleWhileWaitingSec.toFixed(1)} host-s`,
  ].join(' | ');
}
