import type { Queue } from 'bullmq';
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { KafkaAdmin } from '../delivery/kafka.js';
import { queueDepthGauge } from '../ops/queueDepthGauge.js';

const OUTCOMES = [
  'enqueued',
  'duplicate',
  'republished',
  'rebuilt',
  'skipped',
  'dead_lettered',
  'dead_letter_failed',
] as const;
export type MessageOutcome = (typeof OUTCOMES)[number];

export interface BridgeMetrics {
  registry: Registry;
  message(outcome: MessageOutcome): void;
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
  queueDepthGauge(registry, queue);
  return { registry, message: (outcome) => messages.inc({ outcome }) };
}
