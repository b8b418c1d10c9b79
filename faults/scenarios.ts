import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { MAX_STALLED } from '../src/worker/buildWorkers.js';
import { SERVICES, services, sleep } from './cluster.js';
import { hostileAtScale, poisonPill } from './hostileInput.js';
import { sentinelFailover } from './sentinelFailover.js';
import { type Counts, type Size, tally, withCluster } from './tally.js';

const run = promisify(execFile);

// 1. kill -9 a worker in the middle of a build, repeatedly; a fresh worker takes over and reaps what it left.
export function killWorkers(size: Size): Promise<Counts> {
  return withCluster('kill-worker', async (cluster) => {
    await cluster.start('bridge');
    await cluster.start('worker-a');
    await cluster.start('worker-b');
    const shas: string[] = [];
    for (let i = 0; i < size.commits; i += 1) shas.push(await cluster.commit(3));
    for (const sha of shas) await cluster.announce(sha);
    for (let kill = 0; kill < size.kills; kill += 1) {
      await sleep(2_500);
      const victim = kill % 2 === 0 ? 'worker-a' : 'worker-b';
      await cluster.kill(victim);
      await cluster.start(victim);
    }
    return tally(cluster, 'kill -9 a worker mid-build', shas, `${size.kills} kills`);
  });
}

// 2. Stop and restart the Kafka broker while CommitResults are flowing.
export function restartKafka(size: Size): Promise<Counts> {
  return withCluster('restart-kafka', async (cluster) => {
    await cluster.start('bridge');
    await cluster.start('worker-a');
    const shas: string[] = [];
    for (let i = 0; i < size.commits; i += 1) shas.push(await cluster.commit(0));
    const half = Math.ceil(shas.length / 2);
    for (const sha of shas.slice(0, half)) await cluster.announce(sha);
    await services('kafka-down');
    const later = Promise.all(shas.slice(half).map((sha) => cluster.announce(sha)));
    await sleep(4_000);
    await services('kafka-up');
    await later;
    return tally(cluster, 'restart the Kafka broker mid-flow', shas);
  });
}

// 3. kill -9 Redis with jobs waiting, then restart it (AOF, appendfsync always).
export function killRedis(size: Size): Promise<Counts> {
  return withCluster(
    'kill-redis',
    async (cluster) => {
      await cluster.start('bridge');
      await cluster.start('worker-a');
      const shas: string[] = [];
      for (let i = 0; i < size.commits; i += 1) shas.push(await cluster.commit(1));
      for (const sha of shas) await cluster.announce(sha);
      await sleep(2_000);
      const pid = (await readFile(join(SERVICES, 'redis', 'redis.pid'), 'utf8')).trim();
      process.kill(Number(pid), 'SIGKILL');
      await sleep(2_000);
      await services('redis-up');
      return tally(cluster, 'kill -9 Redis with jobs waiting', shas);
    },
    { WORKER_CONCURRENCY: '1' },
  );
}

// 4. SIGSTOP a worker for longer than its lock, then SIGCONT: its job is taken over; one verdict stands.
export function stopWorker(size: Size): Promise<Counts> {
  return withCluster('stop-worker', async (cluster) => {
    await cluster.start('bridge');
    await cluster.start('worker-a');
    const shas: string[] = [];
    for (let i = 0; i < Math.max(1, Math.floor(size.commits / 2)); i += 1) shas.push(await cluster.commit(2));
    for (const sha of shas) await cluster.announce(sha);
    await sleep(1_500);
    await cluster.kill('worker-a', 'SIGSTOP');
    await cluster.start('worker-b');
    await sleep(12_000);
    await cluster.kill('worker-a', 'SIGCONT');
    return tally(cluster, 'SIGSTOP a worker past its lock', shas);
  });
}

// 4b. SIGTERM a worker mid-build with a grace period shorter than the build: the builds are handed back, with no
// attempt spent, to the head of the queue: the next worker starts them before the builds that were already waiting.
export function drainWorker(size: Size): Promise<Counts> {
  return withCluster(
    'drain-worker',
    async (cluster) => {
      await cluster.start('bridge');
      await cluster.start('worker-a');
      const shas: string[] = [];
      for (let i = 0; i < Math.max(4, size.commits); i += 1) shas.push(await cluster.commit(6));
      for (const sha of shas) await cluster.announce(sha);
      await sleep(4_000);
      await cluster.kill('worker-a', 'SIGTERM');
      const handedBack = await cluster.logLines(
        'worker shutting down; build handed back to the head of the queue',
      );
      await cluster.start('worker-b');
      const counts = await tally(cluster, 'SIGTERM a worker mid-build (drain)', shas);
      const startedByB = (await cluster.logLines('build started', 'worker-b')).map((line) => line.commitSha);
      const handedShas = handedBack.map((line) => line.commitSha);
      const resumedFirst =
        startedByB.slice(0, handedShas.length).sort().join() === [...handedShas].sort().join();
      const problems = [
        ...(handedShas.length === 0 ? ['no build was handed back'] : []),
        ...(resumedFirst
          ? []
          : [`handed back ${handedShas.join(',')} but worker-b started ${startedByB.join(',')}`]),
      ];
      return {
        ...counts,
        problems,
        note: `${handedShas.length} handed back, resumed ahead of new work: ${resumedFirst ? 'yes' : 'NO'}`,
      };
    },
    { DRAIN_GRACE_SEC: '2' },
  );
}

// 4c. SIGTERM a worker while Redis is down: it cannot hand its builds back, yet it exits within its deadline (drain
// grace + 30 s) saying so; once Redis is back another worker finishes the builds.
export function drainWithoutRedis(size: Size): Promise<Counts> {
  return withCluster(
    'drain-without-redis',
    async (cluster) => {
      await cluster.start('bridge');
      const worker = await cluster.start('worker-a');
      const shas: string[] = [];
      for (let i = 0; i < Math.max(2, Math.floor(size.commits / 2)); i += 1)
        shas.push(await cluster.commit(8));
      for (const sha of shas) await cluster.announce(sha);
      await sleep(4_000);
      await services('redis-down');
      const started = Date.now();
      const exited = new Promise<number | null>((resolve) =>
        worker.child.once('exit', (code) => resolve(code)),
      );
      worker.child.kill('SIGTERM');
      const bound = (2 + 30 + 10) * 1000;
      const code = await Promise.race([exited, sleep(bound).then(() => 'still running' as const)]);
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      if (code === 'still running') worker.child.kill('SIGKILL');
      await services('redis-up');
      await cluster.start('worker-b');
      const deadlineLogged =
        (await cluster.logLines('shutdown deadline passed', 'worker-a', true)).length > 0;
      const problems =
        code === 'still running'
          ? [`worker-a had not exited ${bound / 1000} s after SIGTERM`]
          : code === 0 || deadlineLogged
            ? []
            : ['worker-a exited without saying why'];
      return tally(
        cluster,
        'SIGTERM a worker while Redis is down',
        shas,
        `exited after ${seconds} s, code ${code}`,
        problems,
      );
    },
    { DRAIN_GRACE_SEC: '2' },
  );
}

// 4e. kill -9 the worker running a build again and again, past BullMQ's stall limit: BullMQ then fails the job without
// calling its processor, and the commit still gets its report: ERRORED, naming the stall.
export function stallLimit(_size: Size): Promise<Counts> {
  return withCluster(
    'stall-limit',
    async (cluster) => {
      await cluster.start('bridge');
      await cluster.start('worker-a');
      const sha = await cluster.commit(120);
      await cluster.announce(sha);
      const started = async () =>
        (await cluster.logLines('build started')).filter((line) => line.commitSha === sha).length;
      const kills = MAX_STALLED + 1;
      for (let kill = 1; kill <= kills; kill += 1) {
        for (const deadline = Date.now() + 120_000; (await started()) < kill && Date.now() < deadline; )
          await sleep(250);
        await cluster.kill('worker-a');
        await cluster.start('worker-a');
      }
      const report = await cluster.reports.waitFor(sha, 120_000).catch(() => undefined);
      const named = report?.status === 'ERRORED' && /stalled more than allowable limit/.test(report.error);
      const problems = named
        ? []
        : [`past the stall limit: ${report?.status ?? 'no report'} ${report?.error ?? ''}`];
      return tally(
        cluster,
        'kill -9 the worker of one build past the stall limit',
        [sha],
        `${kills} kills`,
        problems,
      );
    },
    { WORKER_LOCK_SEC: '2' },
  );
}

// 4f. A commit with 25,000 lint findings, and a normal one behind it, both finished while Kafka is down: once it is
// back, both reports arrive; the large one keeps its first 1,000 findings and counts the rest.
export function oversizedReport(_size: Size): Promise<Counts> {
  return withCluster('oversized-report', async (cluster) => {
    await cluster.start('bridge');
    await cluster.start('worker-a');
    const findings = 25_000;
    const normal = await cluster.commit(0);
    const imports = Array.from({ length: findings }, (_, i) => `import os as m${i}`).join('\n');
    const big = await cluster.repo.commit({ 'imports.py': `${imports}\n` }, 'many unused imports');
    cluster.repo.push('main');
    const shas = [big, normal];
    for (const sha of shas) await cluster.announce(sha);
    const started = async () =>
      new Set((await cluster.logLines('build started')).map((line) => line.commitSha));
    for (const deadline = Date.now() + 120_000; (await started()).size < 2 && Date.now() < deadline; )
      await sleep(250);
    await services('kafka-down');
    const finished = async () =>
      new Set((await cluster.logLines('build finished')).map((line) => line.commitSha));
    for (const deadline = Date.now() + 180_000; (await finished()).size < 2 && Date.now() < deadline; )
      await sleep(500);
    await services('kafka-up');
    const report = await cluster.reports.waitFor(big, 120_000).catch(() => undefined);
    // The probe build that follows must not inherit the findings.
    await cluster.repo.commit({}, 'drop the imports', ['imports.py']);
    cluster.repo.push('main');
    const kept = report?.lintErrors.length ?? 0;
    const omitted = report?.lintErrorsOmitted ?? 0;
    const behind = await cluster.reports.waitFor(normal, 60_000).catch(() => undefined);
    const problems =
      report?.status === 'FAILED' &&
      kept === 1000 &&
      kept + omitted === findings &&
      behind?.status === 'PASSED'
        ? []
        : [
            `large: ${report?.status ?? 'none'}, ${kept} kept, ${omitted} counted; behind it: ${behind?.status}`,
          ];
    return tally(cluster, 'a 25,000-finding report behind a Kafka outage', shas, `${kept} kept`, problems);
  });
}

// 4g. Commits of one branch announced one after another, each superseding the one before, while Redis is killed
// with -9 and restarted: every announced commit still gets a report (superseded or its verdict).
export function supersedeRedisRestart(size: Size): Promise<Counts> {
  return withCluster(
    'supersede-redis-restart',
    async (cluster) => {
      await cluster.start('bridge');
      await cluster.start('worker-a');
      const shas: string[] = [];
      for (let i = 0; i < Math.max(4, size.commits); i += 1) shas.push(await cluster.commit(6));
      const half = Math.ceil(shas.length / 2);
      for (const sha of shas.slice(0, half)) await cluster.announce(sha);
      await sleep(1_500);
      const pid = (await readFile(join(SERVICES, 'redis', 'redis.pid'), 'utf8')).trim();
      process.kill(Number(pid), 'SIGKILL');
      const later = Promise.all(shas.slice(half).map((sha) => cluster.announce(sha)));
      await sleep(2_000);
      await services('redis-up');
      await later;
      const reports = await Promise.all(
        shas.map((sha) => cluster.reports.waitFor(sha, 240_000).catch(() => undefined)),
      );
      const superseded = reports.filter((report) => report?.supersededBy).length;
      return tally(
        cluster,
        'supersede while Redis is killed and restarted',
        shas,
        `${superseded} superseded`,
      );
    },
    { CANCEL_SUPERSEDED_BRANCHES: '*', WORKER_CONCURRENCY: '1' },
  );
}

// 4h. The agent resets its branch to an earlier commit that a newer one had superseded, and announces it again: that
// commit is built and gets its verdict, not its old "superseded" report again.
export function branchReset(_size: Size): Promise<Counts> {
  return withCluster(
    'branch-reset',
    async (cluster) => {
      await cluster.start('bridge');
      const earlier = await cluster.commit(0);
      const later = await cluster.commit(0);
      await cluster.announce(earlier);
      await cluster.announce(later);
      const superseded = await cluster.reports.waitFor(earlier, 60_000).catch(() => undefined);
      await cluster.announce(earlier);
      await cluster.start('worker-a');
      const verdict = await cluster.reports.waitFor(earlier, 240_000, 2).catch(() => undefined);
      const problems = [
        ...(superseded?.supersededBy === later ? [] : [`first report: ${superseded?.error ?? 'none'}`]),
        ...(verdict?.status === 'PASSED'
          ? []
          : [`after the reset: ${verdict?.status ?? 'no report'} ${verdict?.error ?? ''}`]),
      ];
      // The reset commit's two reports differ by design (superseded, then its verdict): it is judged above.
      return tally(cluster, 'a branch reset to a superseded commit', [later], 'reset commit built', problems);
    },
    { CANCEL_SUPERSEDED_BRANCHES: '*' },
  );
}

// 4d. The build disk fills up: builds end ERRORED (after their attempts) naming the stage that failed; once there is
// room again the runner builds as before. Needs root (a small tmpfs is mounted as WORK_DIR).
export function diskFull(size: Size): Promise<Counts> {
  return withDiskFull(async (workDir) =>
    withCluster(
      'disk-full',
      async (cluster) => {
        await cluster.start('bridge');
        await cluster.start('worker-a');
        const shas: string[] = [];
        for (let i = 0; i < Math.max(1, Math.floor(size.commits / 3)); i += 1)
          shas.push(await cluster.commit(0));
        await fill(workDir);
        for (const sha of shas) await cluster.announce(sha);
        const reports = await Promise.all(
          shas.map((sha) => cluster.reports.waitFor(sha, 240_000).catch(() => undefined)),
        );
        await rm(join(workDir, 'fill'), { force: true });
        const problems: string[] = [];
        for (const report of reports) {
          if (!report) continue;
          if (report.status !== 'ERRORED')
            problems.push(`${report.commitSha} ${report.status} on a full disk`);
          const failed = report.stages.find((stage) => stage.outcome === 'errored');
          if (!failed || !report.error.startsWith(`${failed.name}: `))
            problems.push(
              `ERRORED report names no stage: stages ${JSON.stringify(report.stages)} error ${report.error}`,
            );
        }
        const where = reports.map(
          (report) => report?.stages.find((stage) => stage.outcome === 'errored')?.name,
        );
        return tally(cluster, 'the build disk is full', shas, `errored in: ${where.join(', ')}`, problems);
      },
      { WORK_DIR: workDir, BUILD_ATTEMPTS: '2' },
    ),
  );
}

async function withDiskFull(work: (workDir: string) => Promise<Counts>): Promise<Counts> {
  const workDir = await mkdtemp(join(tmpdir(), 'ci-runner-faults-disk-'));
  try {
    await run('mount', ['-t', 'tmpfs', '-o', 'size=32m', 'tmpfs', workDir]);
  } catch (error) {
    await rm(workDir, { recursive: true, force: true });
    throw new Error(`the disk-full scenario mounts a tmpfs and needs root: ${(error as Error).message}`);
  }
  try {
    return await work(workDir);
  } finally {
    await run('umount', ['-l', workDir]).catch(() => undefined);
    await rm(workDir, { recursive: true, force: true });
  }
}

// Fills a filesystem to the last byte.
async function fill(dir: string): Promise<void> {
  await run('dd', ['if=/dev/zero', `of=${join(dir, 'fill')}`, 'bs=1M']).catch(() => undefined);
}

// 6. The same CommitResult delivered five times.
export function duplicates(size: Size): Promise<Counts> {
  return withCluster('duplicates', async (cluster) => {
    await cluster.start('bridge');
    await cluster.start('worker-a');
    const shas: string[] = [];
    for (let i = 0; i < Math.max(1, Math.floor(size.commits / 2)); i += 1) shas.push(await cluster.commit(1));
    for (const sha of shas) {
      for (let copy = 0; copy < 5; copy += 1) await cluster.announce(sha);
    }
    await sleep(3_000);
    for (const sha of shas) await cluster.announce(sha);
    return tally(cluster, 'the same CommitResult 5 times (+1 later)', shas);
  });
}

export const SCENARIOS = [
  killWorkers,
  restartKafka,
  killRedis,
  stopWorker,
  drainWorker,
  drainWithoutRedis,
  stallLimit,
  oversizedReport,
  supersedeRedisRestart,
  branchReset,
  diskFull,
  hostileAtScale,
  poisonPill,
  duplicates,
  sentinelFailover,
];

// Starts the fault suite's own Redis and Kafka, runs every scenario, stops them.
export async function runAll(size: Size, onResult: (counts: Counts) => void): Promise<Counts[]> {
  await services('up');
  const results: Counts[] = [];
  try {
    for (const scenario of SCENARIOS) {
      const counts = await scenario(size);
      onResult(counts);
      results.push(counts);
    }
  } finally {
    await services('down');
  }
  return results;
}
