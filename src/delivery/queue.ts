import { Queue } from 'bullmq';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { RedisTarget } from '../ops/config.js';

/** What the bridge stores for one build; already validated. */
export interface BuildJobData {
  taskId: string;
  commitSha: string;
  branchName: string;
  repositoryUrl: string;
  /**
   * When the commit was announced, in ms since the epoch: the Kafka record's timestamp (the producer's clock), or its
   * arrival at the bridge when the record has none. Decides which of a branch's commits is newer.
   */
  announcedAt?: number;
  /**
   * The warm host the bridge placed the build on (cache-aware placement): a copy waits in that host's own queue, and
   * this canonical job builds only if that copy has not claimed the commit.
   */
  placedOn?: string;
}

export const BUILD_JOB_NAME = 'build';
/** The job states on-call and the metrics count. */
export const QUEUE_STATES = ['waiting', 'active', 'delayed', 'failed', 'completed'] as const;
const DAY_SECONDS = 86_400;
/** How long finished jobs and their reports are kept: a redelivery within it gets the stored report. */
export const RETENTION_SECONDS = 14 * DAY_SECONDS;

// One job per commit: a redelivered CommitResult maps to the same id, and BullMQ refuses to add it twice.
export function buildJobId(commitSha: string): string {
  return `build-${commitSha}`;
}

// A Redis connection as BullMQ needs it: commands wait for reconnection instead of failing after N retries.
export function connectRedis(target: string | Readonly<RedisTarget>): Redis {
  return openRedis(target, { maxRetriesPerRequest: null, enableReadyCheck: true, lazyConnect: false });
}

// A connection to REDIS_URL, or to the primary Redis Sentinel names (found again after a failover), with options.
export function openRedis(target: string | Readonly<RedisTarget>, options: RedisOptions): Redis {
  const { url, sentinels, sentinelName, sentinelPassword, clusterNodes } =
    typeof target === 'string' ? { url: target, clusterNodes: undefined } : target;
  if (!sentinels?.length && !clusterNodes?.length) return new Redis(url, options);
  // With sentinels or a cluster, REDIS_URL gives only the credentials, database and TLS.
  const parsed = url ? new URL(url) : undefined;
  const access = {
    ...(parsed?.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed?.password ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(parsed?.protocol === 'rediss:' ? { tls: {} } : {}),
  };
  if (clusterNodes?.length) {
    // ioredis's cluster client: what the runner calls on a Redis it also answers (keys of one queue share a slot).
    const cluster = new Cluster(clusterNodes, {
      redisOptions: { ...options, ...access },
      enableReadyCheck: options.enableReadyCheck ?? true,
      lazyConnect: options.lazyConnect ?? false,
      enableOfflineQueue: options.enableOfflineQueue ?? true,
    });
    return cluster as unknown as Redis;
  }
  return new Redis({
    ...options,
    ...access,
    sentinels,
    name: sentinelName,
    ...(sentinelPassword ? { sentinelPassword } : {}),
    ...(parsed && parsed.pathname.length > 1 ? { db: Number(parsed.pathname.slice(1)) } : {}),
  });
}

// The builds queue with retry, backoff and retention shared by every producer of build jobs.
export function createBuildQueue(name: string, connection: Redis, attempts: number): Queue<BuildJobData> {
  return new Queue<BuildJobData>(name, {
    connection,
    defaultJobOptions: {
      attempts,
      backoff: { type: 'exponential', delay: 5_000 },
      removeOnComplete: { age: RETENTION_SECONDS },
      removeOnFail: { age: 30 * DAY_SECONDS },
      // The newest lines of a job's log (its attempts together); each attempt's bytes are bounded by JOB_LOG_MAX_KB.
      keepLogs: 1_000,
    },
  });
}
