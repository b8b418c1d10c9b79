import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { affinityQueueName, type Placement } from '../delivery/placement.js';
import { BUILD_JOB_NAME, type BuildJobData, buildJobId, RETENTION_SECONDS } from '../delivery/queue.js';
import type { PlacementConfig } from '../ops/config.js';
import type { Placed } from './bridgeMetrics.js';

/**
 * Where one new build goes: the warm host it is placed on (if any), every live warm host (each gets a copy: the first
 * of them to free a slot builds it warm), and how long the shared copy is held back.
 */
export interface Place {
  host: string | undefined;
  warm: string[];
  delayMs: number;
  /** What placement decided, when it decided (with two or more live hosts). */
  how?: Placed;
}

// Places a batch of builds: each goes to the most recent of the live hosts that built its repository, preferring one
// with a free slot (counted down as the batch fills them), with a copy for every live warm host. A build placed on an idle warm host is held back from the
// other hosts for PLACEMENT_WAIT_MS; one whose warm hosts are all busy is not held back (an idle host takes it cold).
// With fewer than two live hosts there is nothing to choose.
export async function placeBuilds(
  placement: Placement,
  config: Readonly<PlacementConfig>,
  builds: readonly BuildJobData[],
): Promise<Place[]> {
  const nowhere = builds.map(() => ({ host: undefined, warm: [], delayMs: 0 }));
  if (config.mode === 'off' || builds.length === 0) return nowhere;
  const hosts = await placement.liveHosts();
  if (hosts.length < 2) return nowhere;
  const free = new Map(hosts.map(({ host, free }) => [host, free]));
  const places: Place[] = [];
  for (const data of builds) {
    const warm = (await placement.warmHosts(data.repositoryUrl)).filter((host) => free.has(host));
    const host = warm.find((h) => (free.get(h) ?? 0) > 0) ?? warm[0];
    if (host === undefined) {
      places.push({ host: undefined, warm, delayMs: 0, how: 'anywhere' });
      continue;
    }
    const slots = free.get(host) ?? 0;
    free.set(host, slots - 1);
    places.push(
      slots > 0
        ? { host, warm, delayMs: config.waitMs, how: 'warm_idle' }
        : { host, warm, delayMs: 0, how: 'warm_busy' },
    );
  }
  return places;
}

/** The hosts' own queues, opened as builds are placed on them. */
/** A host's queue the bridge has not placed a build on for this long is closed (and opened again when needed). */
const IDLE_QUEUE_MS = 10 * 60_000;

export class AffinityQueues {
  private readonly queues = new Map<string, { queue: Queue<BuildJobData>; usedAt: number }>();

  constructor(
    private readonly queueName: string,
    private readonly connection: Redis,
    private readonly placement?: Placement,
  ) {}

  // Puts each placed build's copy in its host's queue (same job id: a redelivery adds nothing twice).
  async add(placed: ReadonlyArray<{ data: BuildJobData; host: string }>): Promise<void> {
    await this.closeIdle();
    for (const { data, host } of placed) {
      let entry = this.queues.get(host);
      if (!entry) {
        const queue = new Queue<BuildJobData>(affinityQueueName(this.queueName, host), {
          connection: this.connection,
        });
        entry = { queue, usedAt: Date.now() };
        this.queues.set(host, entry);
        // Known from now on, so the queue is removed once its host retires (sweepHostQueues).
        await this.placement?.sawHostQueues([host]);
      }
      entry.usedAt = Date.now();
      await entry.queue.add(BUILD_JOB_NAME, data, {
        jobId: buildJobId(data.commitSha),
        // An infrastructure fault gives the build back to the canonical job, which retries it with backoff.
        attempts: 2,
        removeOnComplete: { age: RETENTION_SECONDS },
        removeOnFail: { age: RETENTION_SECONDS },
      });
    }
  }

  // Closes the queues of hosts nothing was placed on lately (hosts come and go; the map must not only grow).
  private async closeIdle(): Promise<void> {
    const now = Date.now();
    for (const [host, entry] of this.queues) {
      if (now - entry.usedAt < IDLE_QUEUE_MS) continue;
      this.queues.delete(host);
      await entry.queue.close().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map(({ queue }) => queue.close()));
  }
}
