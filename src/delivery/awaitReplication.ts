import type { Redis } from 'ioredis';
import type { RedisTarget } from '../ops/config.js';
import type { Logger } from '../ops/logger.js';

/** How long a write waits for a replica to confirm it before the caller retries. */
const REPLICATION_TIMEOUT_MS = 5_000;

/** Whether a write reached a replica: `alone` when the primary has none connected (nothing to wait for). */
export type Replication = 'replicated' | 'alone';

// Waits until a replica has every write this connection made (WAIT), so a failover to it cannot lose what the caller
// is about to acknowledge. Throws when a replica is connected but did not confirm within timeoutMs (the caller keeps
// the work unacknowledged and retries); resolves `alone` when none is connected, as right after a failover.
export async function awaitReplication(redis: Redis, timeoutMs: number): Promise<Replication> {
  const confirmed = await redis.wait(1, timeoutMs);
  if (confirmed >= 1) return 'replicated';
  const info = await redis.info('replication');
  const replicas = Number(/connected_slaves:(\d+)/.exec(info)?.[1] ?? 0);
  if (replicas > 0) throw new Error(`no Redis replica confirmed the writes within ${timeoutMs} ms`);
  return 'alone';
}

// With Redis Sentinel, a check that what this connection wrote reached a replica (awaitReplication); a primary without
// a connected replica (right after a failover) is said once and not waited for. Without Sentinel, a no-op.
export function replicationCheck(
  target: Readonly<RedisTarget>,
  redis: Redis,
  logger: Logger,
): () => Promise<void> {
  if (!target.sentinels?.length) return async () => undefined;
  let alone = false;
  return async () => {
    const replication = await awaitReplication(redis, REPLICATION_TIMEOUT_MS);
    if (replication === 'alone' && !alone) {
      logger.warn('the Redis primary has no replica connected: writes are not replicated until one is');
    }
    alone = replication === 'alone';
  };
}
