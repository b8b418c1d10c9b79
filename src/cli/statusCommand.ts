import { Queue } from 'bullmq';
import { verdictOf } from '../board/verdictFormatters.js';
import { Placement } from '../delivery/placement.js';
import { connectRedis, QUEUE_STATES } from '../delivery/queue.js';
import { redisAccess } from '../delivery/redisAccess.js';
import { loadConfig } from '../ops/config.js';
import { parseCommand } from './parseCommand.js';
import { STATUS_USAGE } from './usage.js';

// `ci-runner status`: what on-call wants at a glance, straight from Redis.
export async function statusCommand(argv: string[]): Promise<number> {
  const args = parseCommand(argv, STATUS_USAGE, { json: { type: 'boolean', default: false } });
  if (!args) return 0;
  const config = loadConfig(process.env, process.cwd(), ['redis']);
  const redis = connectRedis(config.redis);
  await redisAccess(redis, config.redis);
  // Reads only (its Redis user may be read-only): it does not write the queue's meta as a producer would.
  const queue = new Queue(config.queueName, { connection: redis, skipMetasUpdate: true });
  try {
    const counts = await queue.getJobCounts(...QUEUE_STATES);
    const workers = await queue.getWorkers();
    // The hosts whose workers said they are alive (cache-aware placement), with the build slots they have free.
    const hosts = await new Placement(redis, config.queueName).liveHosts();
    const jobs = await queue.getJobs([...QUEUE_STATES], 0, 49);
    const latest = jobs
      .sort((a, b) => b.timestamp - a.timestamp)
      .slice(0, 10)
      .map((job) => ({
        commitSha: String(job.data.commitSha),
        state: job.finishedOn
          ? job.failedReason
            ? 'failed'
            : 'completed'
          : job.processedOn
            ? 'active'
            : 'waiting',
        status: verdictOf(job) ?? '',
        enqueuedAt: new Date(job.timestamp).toISOString(),
      }));
    const status = { queue: config.queueName, counts, workers: workers.length, hosts, latest };
    if (args.values.json) {
      process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
      return 0;
    }
    const lines = [
      `queue ${config.queueName}: ${QUEUE_STATES.map((state) => `${state} ${counts[state] ?? 0}`).join(', ')}`,
      `workers connected: ${workers.length}`,
      `worker hosts: ${hosts.length ? hosts.map((h) => `${h.host} (${h.free} free)`).join(', ') : 'none (no worker heartbeat: placement off, or no worker running)'}`,
      'latest builds:',
      ...latest.map((b) => `  ${b.enqueuedAt}  ${b.commitSha}  ${b.state.padEnd(9)} ${b.status}`),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  } finally {
    await queue.close();
    redis.disconnect();
  }
}
