import { topicMaxMessageBytes } from '../delivery/kafkaTopics.js';
import type { Config } from '../ops/config.js';
import { toError } from '../ops/errors.js';
import type { Logger } from '../ops/logger.js';

/** Assumed when the topic's limit cannot be read: Kafka's default max.message.bytes. */
const DEFAULT_MAX_MESSAGE_BYTES = 1_048_588;

// Reads the dead-letter topic's record size limit and warns when it is smaller than the source topic's: larger invalid
// records will be dead-lettered truncated.
export async function checkDeadLetterLimit(config: Readonly<Config>, logger: Logger): Promise<number> {
  const source = config.topicCommitResults;
  const target = config.topicDeadLetter;
  const limits = await topicMaxMessageBytes(config.kafka, [source, target], logger).catch(
    (error: unknown) => {
      logger.warn(
        { err: toError(error) },
        "could not read the topics' max.message.bytes; assuming the default",
      );
      return new Map<string, number>();
    },
  );
  const sourceLimit = limits.get(source) ?? DEFAULT_MAX_MESSAGE_BYTES;
  const targetLimit = limits.get(target) ?? DEFAULT_MAX_MESSAGE_BYTES;
  if (targetLimit < sourceLimit) {
    logger.warn(
      { [source]: sourceLimit, [target]: targetLimit },
      `${target} accepts smaller records than ${source}: larger invalid records are dead-lettered truncated (headers x-original-size, x-original-sha256); the whole record stays on ${source} for its retention`,
    );
  }
  return targetLimit;
}
