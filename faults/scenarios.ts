import { join } from 'node:path';
import { encodeCommitResult } from '../src/contracts.js';
import { type Cluster, createCluster, SERVICES, services, sleep } from './cluster.js';

/** The outcome of one scenario, as printed by `npm run faults`. */
export interface Counts {
  scenario: string;
  sent: number;
  built: number;
  reported: number;
  lost: number;
  conflicting: number;
  /** Processes of killed builds still running at the end. */
  strays: number;
  /** A commit sent after the fault was built and reported, with no process restarted by hand. */
  healthy: boolean;
  note: string;
}

/** How big each scenario is: the bounded version inside `npm test` uses small numbers. */
export interface Size {
  commits: number;
  kills: number;
  malformed: number;
}

const REPORT_WAIT_MS = 240_000;

async function tally(cluster: Cluster, scenario: string, shas: string[], note = ''): Promise<Counts> {
  await Promise.all(shas.map((sha) => cluster.reports.waitFor(sha, REPORT_WAIT_MS).catch(() => undefined)));
  const probe = await cluster.commit(0);
  await cluster.announce(probe);
  const healthy = await cluster.reports.waitFor(probe, REPORT_WAIT_MS).then(
    (report) => report.status === 'PASSED',
    () => false,
  );
  await sleep(1_000);
  const builds = await cluster.builds();
  let conflicting = 0;
  let reported = 0;
  for (const sha of shas) {
    const received = cluster.reports.received(sha);
    if (received.length > 0) reported += 1;
    const first = received[0];
    if (received.some((r) => r.key !== sha || (first && !r.bytes.equals(first.bytes)))) conflicting += 1;
  }
  return {
    scenario,
    sent: shas.length,
    built: shas.reduce((sum, sha) => sum + (builds.get(sha) ?? 0), 0),
    reported,
    lost: shas.length - reported,
    conflicting,
    strays: (await cluster.strays()).length,
    healthy,
    note,
  };
}

async function withCluster(
  name: string,
  work: (cluster: Cluster) => Promise<Counts>,
  env: Record<string, string> = {},
) {
  const cluster = await createCluster(name, env);
  try {
    return await work(cluster);
  } finally {
    await cluster.close();
  }
}

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
      const { readFile } = await import('node:fs/promises');
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

// 4b. SIGTERM a worker mid-build with a grace period shorter than the build: the build is handed back and finished
// by another worker, with no attempt spent.
export function drainWorker(size: Size): Promise<Counts> {
  return withCluster(
    'drain-worker',
    async (cluster) => {
      await cluster.start('bridge');
      await cluster.start('worker-a');
      const shas: string[] = [];
      for (let i = 0; i < Math.max(1, Math.floor(size.commits / 2)); i += 1)
        shas.push(await cluster.commit(6));
      for (const sha of shas) await cluster.announce(sha);
      await sleep(2_000);
      await cluster.start('worker-b');
      await cluster.kill('worker-a', 'SIGTERM');
      const counts = await tally(cluster, 'SIGTERM a worker mid-build (drain)', shas);
      const handedBack = await cluster.logCount('worker shutting down; build handed back to the queue');
      return { ...counts, note: `${handedBack} handed back` };
    },
    { DRAIN_GRACE_SEC: '2' },
  );
}

// 5. Malformed and hostile messages mixed with valid ones.
export function malformed(size: Size): Promise<Counts> {
  return withCluster('malformed', async (cluster) => {
    await cluster.start('bridge');
    await cluster.start('worker-a');
    const shas: string[] = [];
    for (let i = 0; i < size.commits; i += 1) shas.push(await cluster.commit(0));
    const hostile = (i: number): Buffer => {
      const kinds = [
        () => Buffer.from([0x0f, i & 0xff, 0x02]),
        () => Buffer.alloc(0),
        () =>
          encodeCommitResult({
            taskId: 't',
            commitSha: 'z'.repeat(40),
            branchName: 'main',
            status: 'SUCCESS',
            repositoryUrl: cluster.repo.url,
          }),
        () =>
          encodeCommitResult({
            taskId: 't',
            commitSha: 'a'.repeat(40),
            branchName: '--upload-pack=touch /tmp/x',
            status: 'SUCCESS',
            repositoryUrl: cluster.repo.url,
          }),
        () =>
          encodeCommitResult({
            taskId: 't',
            commitSha: 'b'.repeat(40),
            branchName: 'main',
            status: 'SUCCESS',
            repositoryUrl: 'file:///etc',
          }),
        () =>
          encodeCommitResult({
            taskId: '',
            commitSha: 'c'.repeat(40),
            branchName: 'main',
            status: 'SUCCESS',
            repositoryUrl: cluster.repo.url,
          }),
      ];
      return (kinds[i % kinds.length] as () => Buffer)();
    };
    const every = Math.max(1, Math.floor(size.malformed / (shas.length + 1)));
    let valid = 0;
    for (let i = 0; i < size.malformed; i += 1) {
      await cluster.announce(`bad-${i}`, hostile(i));
      if (i % every === 0 && valid < shas.length) await cluster.announce(shas[valid++] as string);
    }
    while (valid < shas.length) await cluster.announce(shas[valid++] as string);
    return tally(cluster, `${size.malformed} malformed or hostile messages`, shas);
  });
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
  malformed,
  duplicates,
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

// Nothing lost, nothing conflicting, nothing left running, and the service still builds.
export function passed(c: Counts): boolean {
  return c.lost === 0 && c.conflicting === 0 && c.strays === 0 && c.healthy;
}

export function formatCounts(c: Counts): string {
  const verdict = passed(c) ? 'ok  ' : 'FAIL';
  return `${verdict} ${c.scenario.padEnd(42)} sent ${c.sent}  built ${c.built}  reported ${c.reported}  lost ${c.lost}  conflicting ${c.conflicting}  strays ${c.strays}  healthy after ${c.healthy ? 'yes' : 'NO'}${c.note ? `  (${c.note})` : ''}`;
}
