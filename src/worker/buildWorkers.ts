import { DelayedError, type Job, Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { BuildReport } from '../delivery/contracts.js';
import { affinityQueueName } from '../delivery/placement.js';
import type { BuildJobData } from '../delivery/queue.js';
import type { Config } from '../ops/config.js';
import { toError } from '../ops/errors.js';
import type { Teardown } from '../ops/lifecycle.js';
import type { Logger } from '../ops/logger.js';
import { BuildSlots } from './buildSlots.js';
import { type PlacedParts, runCanonical, runHostCopy } from './placedCopies.js';
import type { RunningBuild } from './supersededBuilds.js';

/** How often a worker process tells the bridge it is alive and how many builds it could start. */
const HEARTBEAT_MS = 2_000;
/** How often a build's job may stall (its worker died or lost the lock mid-build) before BullMQ fails it. */
export const MAX_STALLED = 3;
/** How soon a job fetched while every slot was taken is due again (for this process or another). */
const HANDBACK_MS = 200;

type Build = (job: Job<BuildJobData, BuildReport>, token?: string) => Promise<BuildReport>;

/** What the BullMQ workers of a worker process need. */
export interface BuildWorkersInput {
  config: Readonly<Config>;
  connection: Redis;
  /** Builds one commit (any copy of its job). */
  build: Build;
  placed: PlacedParts;
  /** The builds running now: aborted when the drain grace period is over. */
  running: Map<string, RunningBuild>;
  draining: { value: boolean };
  /** A job completed or failed (its report waits in the outbox). */
  finished: () => void;
  /** A build's job of the shared queue failed (any attempt; BullMQ's own stall limit included). */
  failed: (job: Job<BuildJobData, BuildReport>, error: Error) => void;
  logger: Logger;
  teardown: Teardown;
}

// Runs a job in one of the process's build slots; a job fetched while none is free is handed back at once, and so is
// one that should yield the slot to other work (`yieldTo`).
function inSlot<J extends Job, T>(
  slots: BuildSlots,
  work: (job: J, token?: string) => Promise<T>,
  yieldTo: () => Promise<boolean> = async () => false,
): (job: J, token?: string) => Promise<T> {
  return async (job, token) => {
    if ((await yieldTo().catch(() => false)) || !slots.take()) {
      await job.moveToDelayed(Date.now() + HANDBACK_MS, token);
      throw new DelayedError();
    }
    try {
      return await work(job, token);
    } finally {
      slots.give();
    }
  };
}

// Starts the process's BullMQ workers: one on the shared queue and, with cache-aware placement, one on this host's
// own queue, sharing WORKER_CONCURRENCY slots; with placement, a heartbeat tells the bridge the free slots. On
// shutdown the heartbeat stops first, then running builds get the drain grace period before they are handed back.
export function startBuildWorkers(input: BuildWorkersInput): void {
  const { config, placed, logger, teardown } = input;
  const placing = config.placement.mode === 'cache';
  let leaving = false;
  const heartbeat = () => {
    if (leaving) return;
    void placed.placement
      .heartbeat(config.workerHostId, placed.holder, slots.free)
      .catch((error) => logger.debug({ err: toError(error) }, 'could not send a heartbeat; will retry'));
  };
  const slots = new BuildSlots(config.workerConcurrency, placing ? heartbeat : undefined);
  const options = {
    connection: input.connection,
    concurrency: config.workerConcurrency,
    lockDuration: config.lockMs,
    stalledInterval: config.lockMs,
    maxStalledCount: MAX_STALLED,
  };
  const canonical = (job: Job<BuildJobData, BuildReport>, token?: string) =>
    job.data.placedOn ? runCanonical(placed, job, token, input.build) : input.build(job, token);
  const own = affinityQueueName(config.queueName, config.workerHostId);
  const ownQueue = placing ? new Queue(own, { connection: input.connection }) : undefined;
  // A freed slot goes to this host's own queue first: its builds are warm here, the shared queue's may not be.
  const ownWaiting = async () => ownQueue !== undefined && (await ownQueue.getWaitingCount()) > 0;
  const shared = new Worker<BuildJobData, BuildReport>(
    config.queueName,
    inSlot(slots, canonical, ownWaiting),
    options,
  );
  shared.on('failed', (job, error) => {
    if (job) input.failed(job, error);
  });
  const workers: Worker[] = [shared];
  if (placing) {
    // This host's own queue: builds of the repositories its caches hold, placed here by the bridge.
    const hostCopy = (job: Job<BuildJobData>, token?: string) => runHostCopy(placed, job, token, input.build);
    workers.push(new Worker<BuildJobData>(own, inSlot(slots, hostCopy), options));
    heartbeat();
  }
  const beating = placing ? setInterval(heartbeat, HEARTBEAT_MS) : undefined;
  beating?.unref();
  for (const worker of workers) {
    slots.attach(worker);
    worker.on('completed', input.finished);
    worker.on('failed', input.finished);
    worker.on('error', (error) => logger.error({ err: error }, 'worker error'));
  }
  teardown.add('worker', async () => {
    slots.stop();
    const closing = Promise.all(workers.map((worker) => worker.close()));
    const grace = setTimeout(() => {
      logger.warn({ running: input.running.size }, 'drain grace period over; handing running builds back');
      input.draining.value = true;
      for (const { controller } of input.running.values()) controller.abort();
    }, config.drainGraceMs);
    await closing;
    clearTimeout(grace);
    await ownQueue?.close();
  });
  // First on shutdown: the bridge places no more builds on this process while it drains.
  teardown.add('heartbeat', async () => {
    leaving = true;
    clearInterval(beating);
    if (placing) await placed.placement.leave(config.workerHostId, placed.holder).catch(() => undefined);
  });
}
