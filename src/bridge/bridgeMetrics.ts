import type { Queue } from 'bullmq';
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { KafkaAdmin } from '../delivery/kafkaAdmin.js';
import { queueDepthGauge } from '../ops/queueDepthGauge.js';

const OUTCOMES = [
  'enqueued',
  'duplicate',
  'republished',
  'rebuilt',
  'superseded',
  'skipped',
  'dead_lettered',
  'dead_letter_failed',
] as const;
export type MessageOutcome = (typeof OUTCOMES)[number];

export interface BridgeMetrics {
  registry: Registry;
  message(outcome: MessageOutcome): void;
  superseded(when: 'on_arrival' | 'waiting'): void;
  placed(how: Placed): void;
}

/** Where placement sent a new build: to its idle warm host, to its busy warm host, or anywhere (no warm host). */
export type Placed = 'warm_idle' | 'warm_busy' | 'anywhere';

// The bridge's Prometheus registry: messages by outcome, consumer lag and queue depth.
export function createBridgeMetrics(
  admin: KafkaAdmin,
  groupId: string,
  topic: string,
  queue: Queue,
): BridgeMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const messages = new Counter({
    name: 'ci_bridge_messages_total',
    help: 'CommitResult messages handled, by outcome',
    labelNames: ['outcome'],
    registers: [registry],
  });
  // Every outcome is exported from the start, at 0: increase() sees a counter's first increment only when the series
  // existed before it (the dead-letter alert would otherwise never fire for the first dead letter).
  for (const outcome of OUTCOMES) messages.inc({ outcome }, 0);
  new Gauge({
    name: 'ci_bridge_consumer_lag',
    help: 'CommitResult messages not yet handled (committed) by the bridge group',
    registers: [registry],
    async collect() {
      this.set(await admin.lag(groupId, topic));
    },
  });
  const superseded = new Counter({
    name: 'ci_builds_superseded_total',
    help: 'Builds not run because a newer commit of their branch was announced: on_arrival (announced after it), waiting (removed from the queue)',
    labelNames: ['when'],
    registers: [registry],
  });
  for (const when of ['on_arrival', 'waiting']) superseded.inc({ when }, 0);
  const placed = new Counter({
    name: 'ci_builds_placed_total',
    help: 'New builds by placement (with two or more live hosts): warm_idle (held for their idle warm host), warm_busy (their warm host busy: any host), anywhere (no live host built the repository)',
    labelNames: ['placement'],
    registers: [registry],
  });
  for (const placement of ['warm_idle', 'warm_busy', 'anywhere']) placed.inc({ placement }, 0);
  queueDepthGauge(registry, queue);
  return {
    registry,
    message: (outcome) => messages.inc({ outcome }),
    superseded: (when) => superseded.inc({ when }),
    placed: (placement) => placed.inc({ placement }),
  };
}
