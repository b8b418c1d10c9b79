import type { Queue } from 'bullmq';
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { KafkaAdmin } from '../delivery/kafka.js';
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
}

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
  queueDepthGauge(registry, queue);
  return {
    registry,
    message: (outcome) => messages.inc({ outcome }),
    superseded: (when) => superseded.inc({ when }),
  };
}
