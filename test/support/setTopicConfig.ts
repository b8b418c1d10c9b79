import kafkajs, { Kafka, logLevel } from 'kafkajs';

// Sets topic configuration entries (say, a smaller max.message.bytes for a dead-letter topic), as an operator would.
export async function setTopicConfig(
  brokers: string[],
  topic: string,
  entries: Record<string, string>,
): Promise<void> {
  const admin = new Kafka({ clientId: 'test-admin', brokers, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    await admin.alterConfigs({
      validateOnly: false,
      resources: [
        {
          // Not a named export Node can see in kafkajs's CommonJS module.
          type: kafkajs.ConfigResourceTypes.TOPIC,
          name: topic,
          configEntries: Object.entries(entries).map(([name, value]) => ({ name, value })),
        },
      ],
    });
  } finally {
    await admin.disconnect();
  }
}
