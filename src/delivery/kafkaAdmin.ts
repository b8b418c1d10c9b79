import type { Logger } from '../ops/logger.js';
import { client } from './kafkaClient.js';
import { type KafkaAt, kafkaRefusal } from './kafkaRefusal.js';

/** Read-only cluster queries for metrics. */
export interface KafkaAdmin {
  /** Messages on the topic the group has not committed yet, summed over partitions. */
  lag(groupId: string, topic: string): Promise<number>;
  close(): Promise<void>;
}

// Connects an admin client used to measure consumer lag.
export async function connectAdmin(brokers: KafkaAt, logger: Logger): Promise<KafkaAdmin> {
  const admin = client(brokers, 'ci-runner-metrics', logger).admin();
  await admin.connect().catch((error: unknown) => {
    throw kafkaRefusal(error, brokers, 'connect an admin client');
  });
  return {
    async lag(groupId, topic) {
      const [ends, committed] = await Promise.all([
        admin.fetchTopicOffsets(topic),
        admin.fetchOffsets({ groupId, topics: [topic] }),
      ]);
      const done = new Map(
        (committed[0]?.partitions ?? []).map((p) => [
          p.partition,
          BigInt(p.offset === '-1' ? '0' : p.offset),
        ]),
      );
      let lag = 0n;
      for (const { partition, high } of ends) {
        const behind = BigInt(high) - (done.get(partition) ?? 0n);
        if (behind > 0n) lag += behind;
      }
      return Number(lag);
    },
    close: () => admin.disconnect(),
  };
}
