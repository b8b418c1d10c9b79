import type { Queue } from 'bullmq';
import type { Placement } from '../delivery/placement.js';
import type { BuildJobData } from '../delivery/queue.js';
import type { ReportOutbox } from '../delivery/reportOutbox.js';
import type { ReportStore } from '../delivery/reportStore.js';
import type { Supersession } from '../delivery/supersession.js';
import type { BranchFilter } from '../ops/branchFilter.js';
import type { Config } from '../ops/config.js';
import type { Logger } from '../ops/logger.js';
import type { MessageOutcome, Placed } from './bridgeMetrics.js';
import type { DeadLetterTopic } from './deadLetter.js';
import type { AffinityQueues } from './placeBuilds.js';

/** What the batch handler works with: the bridge's connections, counters and backpressure state. */
export interface BridgeParts {
  config: Readonly<Config>;
  logger: Logger;
  queue: Queue<BuildJobData>;
  store: ReportStore;
  /** Publishes the reports of builds the bridge cancels as superseded. */
  outbox: ReportOutbox;
  supersession: Supersession;
  /** Which hosts' caches hold each repository, and which hosts are alive with free slots. */
  placement: Placement;
  /** The hosts' own queues, where placed builds' copies go. */
  affinity: AffinityQueues;
  /** Whether a branch is in CANCEL_SUPERSEDED_BRANCHES. */
  inSupersedeBranches: BranchFilter;
  deadLetters: DeadLetterTopic;
  closing: { value: boolean };
  /** The last waiting-jobs reading and the builds enqueued since, so most messages need no extra Redis query. */
  backlog: { waiting: number; readAt: number; enqueuedSince: number };
  count: (outcome: MessageOutcome) => void;
  /** Resolves once what the bridge wrote would survive a Redis failover (a no-op without replicas configured). */
  replicated: () => Promise<void>;
  /** Counts a new build by where placement sent it (only with two or more live hosts). */
  placed: (how: Placed) => void;
  /** Counts a build canceled because a newer commit of its branch was announced, by when. */
  superseded: (when: 'on_arrival' | 'waiting') => void;
}
