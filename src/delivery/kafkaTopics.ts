import kafkajs from 'kafkajs';
import type { Logger } from '../ops/logger.js';
import type { KafkaAt } from './kafka.js';
import { client } from './kafkaClient.js';
import { kafkaRefusal } from './kafkaRefusal.js';

// The topics ci-runner uses: created when missing, and their record size limits read.

// Creates the topics ci-runner uses if they are missing (kafkajs cannot subscribe to a topic that does not exist),
// with the given topic configuration (say max.message.bytes) if any.
export async function ensureTopics(
  brokers: KafkaAt,
  topics: string[],
  logger: Logger,
  configs: Record<string, string> = {},
): Promise<void> {
  const admin = client(brokers, 'ci-runner-admin', logger).admin();
  try {
    await admin.connect();
    const existing = new Set(await admin.listTopics());
    const missing = [...new Set(topics)].filter((topic) => !existing.has(topic));
    if (missing.length > 0) {
      const configEntries = Object.entries(configs).map(([name, value]) => ({ name, value }));
      await admin.createTopics({
        topics: missing.map((topic) => ({ topic, configEntries })),
        waitForLeaders: true,
      });
      logger.info({ topics: missing }, 'created Kafka topics');
    }
  } catch (error) {
    throw kafkaRefusal(error, brokers, `see or create the topics ${topics.join(', ')}`);
  } finally {
    await admin.disconnect();
  }
}

// The largest record (batch) each topic accepts: its max.message.bytes, the broker's default when not overridden.
export async function topicMaxMessageBytes(
  brokers: KafkaAt,
  topics: string[],
  logger: Logger,
): Promise<Map<string, number>> {
  const admin = client(brokers, 'ci-runner-admin', logger).admin();
  await admin.connect();
  try {
    const { resources } = await admin.describeConfigs({
      includeSynonyms: false,
      resources: topics.map((name) => ({
        // Not a named export Node can see in kafkajs's CommonJS module.
        type: kafkajs.ConfigResourceTypes.TOPIC,
        name,
        configNames: ['max.message.bytes'],
      })),
    });
    const limits = new Map<string, number>();
    for (const resource of resources) {
      const entry = resource.configEntries.find((e) => e.configName === 'max.message.bytes');
      if (entry) limits.set(resource.resourceName, Number(entry.configValue));
    }
    return limits;
  } finally {
    await admin.disconnect();
  }
}
