import type { Redis } from 'ioredis';
import { ConfigError } from '../ops/errors.js';
import type { RedisTarget } from '../ops/storeConfig.js';

/** Redis's answers that mean the runner's credentials or permissions are wrong: reconnecting cannot help. */
const REFUSED = /^(WRONGPASS|NOAUTH|NOPERM)\b/;

// Where and as whom a connection goes, for messages: never the password.
function describeTarget(target: string | Readonly<RedisTarget>): { where: string; who: string } {
  const { url, sentinels, clusterNodes } = typeof target === 'string' ? { url: target } : target;
  const parsed = url && URL.canParse(url) ? new URL(url) : undefined;
  const nodes = sentinels?.length ? sentinels : clusterNodes;
  const where = nodes?.length ? nodes.map((n) => `${n.host}:${n.port}`).join(',') : (parsed?.host ?? 'Redis');
  const who = parsed?.username ? `user "${decodeURIComponent(parsed.username)}"` : 'the default user';
  return { where, who };
}

// Resolves once the connection is ready; a refusal of its credentials (or of a command the ready check needs) is a
// one-line ConfigError at start-up, and the connection stops retrying. Any other trouble keeps ioredis retrying.
export function redisAccess(redis: Redis, target: string | Readonly<RedisTarget>): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    // A Cluster client reports its nodes' refusals as 'node error'.
    const done = () => {
      redis.off('ready', onReady);
      redis.off('error', onError);
      redis.off('node error', onError);
    };
    const onReady = () => {
      done();
      resolve();
    };
    const onError = (error: Error) => {
      const line = error.message.split('\n')[0] ?? '';
      if (!REFUSED.test(line)) return;
      done();
      redis.disconnect();
      const { where, who } = describeTarget(target);
      reject(
        new ConfigError(
          `Redis at ${where} refused ${who}: ${line} (check REDIS_URL, REDIS_USERNAME and REDIS_PASSWORD or REDIS_PASSWORD_FILE)`,
        ),
      );
    };
    redis.on('ready', onReady);
    redis.on('error', onError);
    redis.on('node error', onError);
  });
}
