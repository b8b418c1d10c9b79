import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { affinityQueueName, type Placement } from '../delivery/placement.js';
import type { Logger } from '../ops/logger.js';

/** A host with no live worker process for this long is retired: its own queue is removed. */
export const RETIRED_AFTER_MS = 30 * 60_000;

// Removes the own queues of hosts that have been gone for retiredAfterMs. Their copies are only executors: every
// placed build's job on the shared queue stands for it and builds it wherever a slot frees, so nothing is lost; a
// retired host's queue would otherwise keep its waiting copies forever. Returns the hosts whose queue was removed.
export async function sweepHostQueues(
  placement: Placement,
  queueName: string,
  connection: Redis,
  logger: Logger,
  retiredAfterMs = RETIRED_AFTER_MS,
): Promise<string[]> {
  const live = new Set((await placement.liveHosts()).map(({ host }) => host));
  const known = await placement.hostQueues();
  await placement.sawHostQueues([...known.keys()].filter((host) => live.has(host)));
  const retired: string[] = [];
  for (const [host, seenAt] of known) {
    if (live.has(host) || Date.now() - seenAt < retiredAfterMs) continue;
    const queue = new Queue(affinityQueueName(queueName, host), { connection });
    try {
      await queue.obliterate({ force: true });
    } finally {
      await queue.close();
    }
    await placement.forgetHostQueue(host);
    retired.push(host);
    logger.info({ host }, "removed a retired host's own queue (its builds stay on the shared queue)");
  }
  return retired;
}
