import { Redis } from 'ioredis';

// The bridge's Redis connection fails commands fast while Redis is away (no offline queue), so the bridge can back
// off and heartbeat instead of hanging inside a Kafka message handler.
export function connectBridgeRedis(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, enableReadyCheck: true });
}
