import { heartbeatDuringWait, type IncomingMessage } from '../delivery/kafka.js';
import { BUILD_JOB_NAME, type BuildJobData, buildJobId } from '../delivery/queue.js';
import { toError } from '../ops/errors.js';
import type { MessageOutcome } from './bridgeMetrics.js';
import type { BridgeParts } from './bridgeParts.js';
import { sendDeadLetters } from './deadLetter.js';
import { placeBuilds } from './placeBuilds.js';
import { cancelSuperseded, planSupersession, reportSuperseded } from './supersede.js';
import { decide } from './validate.js';

const BACKPRESSURE_CHECK_MS = 1_000;
const RETRY_MAX_MS = 10_000;

// Retries a Redis or Kafka step with exponential backoff until it works, heartbeating so the group keeps the
// partition; the message's offset is not committed meanwhile, so nothing is lost if the bridge dies.
async function untilDone<T>(
  parts: BridgeParts,
  what: string,
  step: () => Promise<T>,
  heartbeat: () => Promise<void>,
) {
  let delay = 200;
  for (;;) {
    try {
      return await step();
    } catch (thrown) {
      if (parts.closing.value) throw thrown;
      parts.logger.warn({ err: toError(thrown), retryInMs: delay }, `${what} failed; retrying`);
      await heartbeatDuringWait(heartbeat);
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  }
}

// A record key for the log: short printable keys as they are, others by size and first bytes in hex.
function keyForLog(key: Buffer | null): string | null {
  if (!key) return null;
  const text = key.toString('utf8');
  if (key.length <= 128 && /^[\x20-\x7e]*$/.test(text)) return text;
  return `${key.length} bytes: ${key.subarray(0, 16).toString('hex')}${key.length > 16 ? '…' : ''}`;
}

// Decides what one batch of new builds comes to, in as few Redis round trips as the batch allows: a stored verdict is
// republished, an ERRORED build is built again with the new data, a job already there is a duplicate, and the rest
// are added in one bulk call (the job id, derived from the sha, makes a concurrent add a no-op).
async function enqueueAll(parts: BridgeParts, builds: BuildJobData[]): Promise<MessageOutcome[]> {
  const { queue, store } = parts;
  const outcomes: MessageOutcome[] = [];
  const statuses = await store.statuses(builds.map((data) => data.commitSha));
  const seen = new Set<string>();
  const candidates: Array<[number, BuildJobData]> = [];
  for (const [index, data] of builds.entries()) {
    if (seen.has(data.commitSha)) {
      outcomes[index] = 'duplicate';
      continue;
    }
    seen.add(data.commitSha);
    const status = statuses[index];
    // A finished build's verdict is published again (marked republished) instead of building twice.
    if ((status === 'PASSED' || status === 'FAILED') && (await store.republish(data.commitSha))) {
      outcomes[index] = 'republished';
      continue;
    }
    candidates.push([index, data]);
  }
  const jobs = await Promise.all(candidates.map(([, data]) => queue.getJob(buildJobId(data.commitSha))));
  const toBuild: Array<{ index: number; data: BuildJobData; failed: (typeof jobs)[number] }> = [];
  for (const [k, [index, data]] of candidates.entries()) {
    const existing = jobs[k];
    if (existing && !(await existing.isFailed())) outcomes[index] = 'duplicate';
    else toBuild.push({ index, data, failed: existing });
  }
  const plan = await planSupersession(
    parts,
    toBuild.map((build) => build.data),
  );
  const added: Array<[number, BuildJobData]> = [];
  for (const [k, { index, data, failed }] of toBuild.entries()) {
    const newer = plan.superseded.get(k);
    if (newer) {
      await reportSuperseded(parts, data, newer);
      parts.superseded('on_arrival');
      outcomes[index] = 'superseded';
    } else if (failed) {
      // Its build ended ERRORED (no verdict on the commit): build it again, with this message's data.
      await failed.updateData(data);
      await failed.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
      outcomes[index] = 'rebuilt';
    } else {
      added.push([index, data]);
    }
  }
  if (added.length > 0) {
    const places = await placeBuilds(
      parts.placement,
      parts.config.placement,
      added.map(([, data]) => data),
    );
    const jobs = added.map(([, data], k) => {
      const { host, warm, delayMs, how } = places[k] ?? { host: undefined, warm: [], delayMs: 0 };
      if (how) parts.placed(how);
      return { data: host ? { ...data, placedOn: host } : data, warm: host ? warm : [], delayMs };
    });
    // The canonical jobs first: a copy in a host's queue never exists without the job that stands for its build.
    await queue.addBulk(
      jobs.map(({ data, delayMs }) => ({
        name: BUILD_JOB_NAME,
        data,
        opts: { jobId: buildJobId(data.commitSha), ...(delayMs > 0 ? { delay: delayMs } : {}) },
      })),
    );
    await parts.affinity.add(jobs.flatMap(({ data, warm }) => warm.map((host) => ({ data, host }))));
    for (const [index] of added) outcomes[index] = 'enqueued';
    parts.backlog.enqueuedSince += added.length;
  }
  const reported = [...plan.superseded.keys()].map(
    (k) => (toBuild[k] as (typeof toBuild)[number]).data.commitSha,
  );
  for (const { previous, by } of plan.cancel) {
    if ((await cancelSuperseded(parts, previous, by)) !== 'removed') continue;
    parts.superseded('waiting');
    reported.push(previous.commitSha);
  }
  if (reported.length > 0) void parts.outbox.flushOnly(reported);
  return outcomes;
}

// Handles a batch of one partition's messages in offset order: validates each, dead-letters the invalid ones,
// counts the skips, and enqueues the rest in bulk (no more at a time than MAX_WAITING_JOBS leaves room for). Logs each
// message at debug level and the batch at info; the batch's offsets are committed only after it resolves.
export function batchHandler(parts: BridgeParts) {
  const { config, logger, deadLetters, count } = parts;
  return async (messages: IncomingMessage[], heartbeat: () => Promise<void>): Promise<void> => {
    const tally: Partial<Record<MessageOutcome, number>> = {};
    const note = (outcome: MessageOutcome) => {
      count(outcome);
      tally[outcome] = (tally[outcome] ?? 0) + 1;
    };
    const builds: Array<{ message: IncomingMessage; data: BuildJobData }> = [];
    const invalid: Array<{ message: IncomingMessage; reason: string }> = [];
    for (const message of messages) {
      const decision = decide(message.value, config.remoteRepo);
      const where = { partition: message.partition, offset: message.offset };
      logger.debug({ ...where, key: keyForLog(message.key) }, 'commit result received');
      if (decision.kind === 'skip') {
        logger.debug({ ...where, reason: decision.reason }, 'skipped commit result');
        note('skipped');
      } else if (decision.kind === 'reject') {
        invalid.push({ message, reason: decision.reason });
      } else {
        // The record's timestamp (its producer's clock) orders a branch's commits; arrival here when it has none.
        builds.push({ message, data: { ...decision.data, announcedAt: message.timestamp ?? Date.now() } });
      }
    }
    const lettered = await sendDeadLetters(deadLetters, invalid, heartbeat, logger, parts.closing);
    for (const outcome of lettered) note(outcome);
    for (let next = 0; next < builds.length; ) {
      await belowLimit(parts, heartbeat);
      const { waiting, enqueuedSince } = parts.backlog;
      const room = Math.max(1, config.maxWaitingJobs - waiting - enqueuedSince);
      const slice = builds.slice(next, next + room);
      const outcomes = await untilDone(
        parts,
        'enqueueing',
        async () => {
          const enqueued = await enqueueAll(
            parts,
            slice.map((build) => build.data),
          );
          // The offsets are committed after this: a failover must not lose the jobs they stand for.
          await parts.replicated();
          return enqueued;
        },
        heartbeat,
      );
      for (const [k, outcome] of outcomes.entries()) {
        const { message, data } = slice[k] as (typeof slice)[number];
        note(outcome);
        logger.debug(
          {
            partition: message.partition,
            offset: message.offset,
            commitSha: data.commitSha,
            taskId: data.taskId,
            outcome,
          },
          `commit result ${outcome}`,
        );
      }
      next += slice.length;
    }
    const first = messages[0];
    logger.info(
      { partition: first?.partition, from: first?.offset, to: messages.at(-1)?.offset, ...tally },
      `${messages.length} commit result(s) handled`,
    );
  };
}

// Holds the message (and so its partition) while MAX_WAITING_JOBS builds wait, heartbeating so the group keeps the
// partition; the offset stays uncommitted, so a bridge restart meanwhile loses nothing.
async function belowLimit(parts: BridgeParts, heartbeat: () => Promise<void>): Promise<void> {
  const { backlog } = parts;
  const recent = Date.now() - backlog.readAt < BACKPRESSURE_CHECK_MS;
  if (recent && backlog.waiting + backlog.enqueuedSince < parts.config.maxWaitingJobs) return;
  let paused = false;
  for (;;) {
    const waiting = await parts.queue.getWaitingCount().catch(() => Number.POSITIVE_INFINITY);
    Object.assign(backlog, { waiting, readAt: Date.now(), enqueuedSince: 0 });
    if (waiting < parts.config.maxWaitingJobs) {
      if (paused) parts.logger.info({ waiting }, 'resuming consumption');
      return;
    }
    if (!paused) {
      paused = true;
      parts.logger.warn({ waiting, limit: parts.config.maxWaitingJobs }, 'too many waiting builds; pausing');
    }
    if (parts.closing.value) throw new Error('bridge closing');
    await heartbeat();
    await new Promise((resolve) => setTimeout(resolve, BACKPRESSURE_CHECK_MS));
  }
}
