import type { Redis } from 'ioredis';
import { openRedis } from '../delivery/queue.js';
import type { RedisTarget } from '../ops/config.js';

// The bridge's Redis connection fails commands fast while Redis is away (no offline queue), so the bridge can back
// off and heartbeat instead of hanging inside a Kafka message handler.
export function connectBridgeRedis(target: Readonly<RedisTarget>): Redis {
  return openRedis(target, { maxRetriesPerRequest: 1, enableOfflineQueue: false, enableReadyCheck: true });
}
