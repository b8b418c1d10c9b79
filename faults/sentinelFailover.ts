import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { SERVICES, sleep } from './cluster.js';
import { type Counts, type Size, tally, withCluster } from './tally.js';

const run = promisify(execFile);
const SCRIPT = resolve(import.meta.dirname, '../scripts/sentinel.sh');
const env = { ...process.env, CI_RUNNER_SERVICES_DIR: SERVICES };

// scripts/sentinel.sh with the fault suite's state directory; returns what it printed.
async function sentinel(action: string): Promise<string> {
  return (await run('bash', [SCRIPT, action], { env })).stdout;
}

// 11. Redis behind Sentinel (a primary and a replica): kill -9 the primary mid-flow. The sentinels promote the
// replica, every process finds it, and no build or report is lost.
export async function sentinelFailover(size: Size): Promise<Counts> {
  const exports = await sentinel('up');
  const vars = Object.fromEntries(
    [...exports.matchAll(/^export (\w+)=(.*)$/gm)].map((match) => [match[1] as string, match[2] as string]),
  );
  try {
    return await withCluster(
      'sentinel-failover',
      async (cluster) => {
        await cluster.start('bridge');
        await cluster.start('worker-a');
        const shas: string[] = [];
        for (let i = 0; i < size.commits * 2; i += 1) shas.push(await cluster.commit(1));
        const half = Math.ceil(shas.length / 2);
        for (const sha of shas.slice(0, half)) await cluster.announce(sha);
        await sleep(1_500);
        const primary = (await sentinel('primary')).trim();
        const pid = (await readFile(join(SERVICES, 'sentinel', primary, 'redis.pid'), 'utf8')).trim();
        process.kill(Number(pid), 'SIGKILL');
        // Announced while the sentinels notice and promote the replica (about 2-3 s).
        for (const sha of shas.slice(half)) await cluster.announce(sha);
        let promoted = primary;
        for (let waited = 0; promoted === primary && waited < 30_000; waited += 250) {
          await sleep(250);
          promoted = (await sentinel('primary').catch(() => primary)).trim();
        }
        const problems =
          promoted === primary ? ['the sentinels did not promote the replica within 30 s'] : [];
        const note = `primary :${primary} → :${promoted}`;
        return tally(cluster, 'kill -9 the Redis primary (Sentinel failover)', shas, note, problems);
      },
      { REDIS_URL: '', ...vars, WORKER_CONCURRENCY: '1' },
    );
  } finally {
    await sentinel('down');
  }
}
