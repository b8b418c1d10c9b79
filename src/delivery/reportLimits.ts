import { toError } from '../ops/errors.js';
import type { Logger } from '../ops/logger.js';
import { DEFAULT_REPORT_LIMITS, type ReportLimits } from './fitReport.js';
import type { KafkaAt } from './kafka.js';
import { topicMaxMessageBytes } from './kafkaTopics.js';

/** Room left in a record for everything but the report: its key, framing and batch header. */
const RECORD_OVERHEAD_BYTES = 1024;

// The limits every report is kept within: the reports topic's max.message.bytes as the broker states it at start-up
// (the default's when it cannot be read), and at most maxEntries per list.
export async function reportLimits(
  brokers: KafkaAt,
  topic: string,
  maxEntries: number,
  logger: Logger,
): Promise<ReportLimits> {
  const limits = await topicMaxMessageBytes(brokers, [topic], logger).catch((error: unknown) => {
    logger.warn(
      { err: toError(error), topic },
      "could not read the reports topic's max.message.bytes; assuming the default",
    );
    return new Map<string, number>();
  });
  const topicBytes = limits.get(topic);
  const maxBytes = topicBytes ? topicBytes - RECORD_OVERHEAD_BYTES : DEFAULT_REPORT_LIMITS.maxBytes;
  logger.info({ topic, maxBytes, maxEntries }, 'reports are kept within these limits');
  return { maxEntries, maxBytes: Math.max(maxBytes, 4096) };
}
