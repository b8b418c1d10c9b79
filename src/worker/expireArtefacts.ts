import type { Redis } from 'ioredis';
import type { ArtefactStore } from '../delivery/artefactStore.js';
import { toError } from '../ops/errors.js';
import type { Logger } from '../ops/logger.js';

/** How often artefacts past their retention are removed (by one worker of the deployment at a time). */
export const EXPIRY_INTERVAL_MS = 3_600_000;
const DAY_MS = 86_400_000;

// Removes the artefacts older than ARTEFACT_RETENTION_DAYS, unless another worker did so within the interval (a
// claim in Redis): the store is shared by every worker with S3. Resolves with how many went, or undefined.
export async function expireArtefacts(
  artefacts: ArtefactStore,
  redis: Redis,
  queueName: string,
  days: number,
  logger: Logger,
): Promise<number | undefined> {
  try {
    const claim = `ci-runner:${queueName}:artefact-expiry`;
    if ((await redis.set(claim, String(process.pid), 'PX', EXPIRY_INTERVAL_MS, 'NX')) !== 'OK')
      return undefined;
    const removed = await artefacts.expire(new Date(Date.now() - days * DAY_MS));
    if (removed > 0) logger.info({ removed, days }, 'removed artefacts past ARTEFACT_RETENTION_DAYS');
    return removed;
  } catch (error) {
    logger.warn({ err: toError(error) }, 'could not remove expired artefacts; will retry');
    return undefined;
  }
}
