import { createHash } from 'node:crypto';
import {
  heartbeatDuringWait,
  type IncomingMessage,
  isTooLarge,
  type OutgoingMessage,
  type Publisher,
} from '../delivery/kafka.js';
import { toError } from '../ops/errors.js';
import type { Logger } from '../ops/logger.js';

/** Bytes a record needs beyond its key, value and headers (batch and record framing), with room to spare. */
const FRAMING_BYTES = 1_024;
/** The smallest size limit tried after the broker refused a record as too large. */
const MIN_LIMIT_BYTES = 4_096;
const ATTEMPTS = 8;
const FIRST_DELAY_MS = 200;
const MAX_DELAY_MS = 10_000;

export interface DeadLetterTopic {
  publisher: Publisher;
  topic: string;
  /** The largest record the topic accepts (its max.message.bytes). */
  maxBytes: number;
}

export type DeadLetterOutcome = 'dead_lettered' | 'dead_letter_failed';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

function headerBytes(headers: Record<string, string | Buffer>): number {
  return Object.entries(headers).reduce((sum, [name, value]) => sum + name.length + value.length + 8, 0);
}

// The dead letter of an invalid record: its key, value and headers byte for byte, plus why and where it came from.
// A record larger than the dead-letter topic accepts is cut to fit and says so in headers (x-ci-runner-truncated,
// x-original-size, x-original-sha256); the whole record stays on the source topic for its retention.
export function deadLetterFor(message: IncomingMessage, reason: string, maxBytes: number): OutgoingMessage {
  const value = message.value ?? Buffer.alloc(0);
  const ours = {
    'x-ci-runner-error': reason,
    'x-original-topic': message.topic,
    'x-original-partition': String(message.partition),
    'x-original-offset': message.offset,
  };
  let key = message.key;
  let headers: Record<string, string | Buffer> = { ...message.headers, ...ours };
  const size = () => (key?.length ?? 0) + value.length + headerBytes(headers) + FRAMING_BYTES;
  if (size() <= maxBytes) return { key, value, headers };
  const cut: Record<string, string> = {
    'x-ci-runner-truncated': 'true',
    'x-original-size': String(value.length),
    'x-original-sha256': sha256(value),
  };
  if (headerBytes(message.headers) > maxBytes / 4) {
    cut['x-ci-runner-dropped-headers'] = Object.keys(message.headers).join(',').slice(0, 1_024);
    headers = { ...ours };
  }
  if (key && key.length > maxBytes / 4) {
    cut['x-original-key-size'] = String(key.length);
    cut['x-original-key-sha256'] = sha256(key);
    key = key.subarray(0, 256);
  }
  headers = { ...headers, ...cut };
  const room = Math.max(0, maxBytes - (key?.length ?? 0) - headerBytes(headers) - FRAMING_BYTES);
  return { key, value: value.subarray(0, room), headers };
}

// Sends an invalid record to the dead-letter topic, a bounded number of times so one record can never hold its
// partition: a record the broker refuses as too large is cut smaller and sent again. Heartbeats while waiting.
export async function sendDeadLetter(
  target: DeadLetterTopic,
  message: IncomingMessage,
  reason: string,
  heartbeat: () => Promise<void>,
  logger: Logger,
  closing: { value: boolean },
): Promise<DeadLetterOutcome> {
  let limit = target.maxBytes;
  let delay = FIRST_DELAY_MS;
  const where = { partition: message.partition, offset: message.offset };
  for (let attempt = 1; attempt <= ATTEMPTS; attempt += 1) {
    const letter = deadLetterFor(message, reason, limit);
    try {
      await target.publisher.send(target.topic, [letter]);
      if (letter.headers?.['x-ci-runner-truncated']) {
        logger.warn(
          { ...where, bytes: message.value?.length ?? 0, sent: letter.value.length, limit },
          'dead letter truncated to fit the dead-letter topic; the whole record stays on the source topic',
        );
      }
      return 'dead_lettered';
    } catch (thrown) {
      if (closing.value) throw thrown;
      const error = toError(thrown);
      if (isTooLarge(error)) {
        limit = Math.max(MIN_LIMIT_BYTES, Math.floor(Math.min(limit, letter.value.length) / 2));
        logger.warn(
          { ...where, err: error, limit },
          'dead letter too large for its topic; cutting it smaller',
        );
        continue;
      }
      logger.warn({ ...where, err: error, attempt, retryInMs: delay }, 'dead-lettering failed; retrying');
      await heartbeatDuringWait(heartbeat);
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, MAX_DELAY_MS);
    }
  }
  logger.error(
    { ...where, topic: target.topic, attempts: ATTEMPTS, reason },
    'could not dead-letter an invalid record; moving on (it stays on the source topic for its retention)',
  );
  return 'dead_letter_failed';
}

// Dead-letters a batch's invalid records: together, in sends that stay well under the topic's size limit, and each
// on its own (with sendDeadLetter's bounded attempts and cutting) when a joint send fails. Outcomes in input order.
export async function sendDeadLetters(
  target: DeadLetterTopic,
  invalid: Array<{ message: IncomingMessage; reason: string }>,
  heartbeat: () => Promise<void>,
  logger: Logger,
  closing: { value: boolean },
): Promise<DeadLetterOutcome[]> {
  const outcomes: DeadLetterOutcome[] = [];
  const budget = Math.floor(target.maxBytes / 2);
  for (let next = 0; next < invalid.length; ) {
    const group: typeof invalid = [];
    let bytes = 0;
    while (next < invalid.length) {
      const item = invalid[next] as (typeof invalid)[number];
      const size = (item.message.value?.length ?? 0) + (item.message.key?.length ?? 0) + FRAMING_BYTES;
      if (group.length > 0 && bytes + size > budget) break;
      group.push(item);
      bytes += size;
      next += 1;
    }
    const letters = group.map(({ message, reason }) => deadLetterFor(message, reason, target.maxBytes));
    const together = group.length > 1 && !letters.some((letter) => letter.headers?.['x-ci-runner-truncated']);
    if (together) {
      try {
        await target.publisher.send(target.topic, letters);
        for (const { message, reason } of group) {
          logger.warn(
            { partition: message.partition, offset: message.offset, reason },
            'dead-lettered commit result',
          );
          outcomes.push('dead_lettered');
        }
        continue;
      } catch (thrown) {
        if (closing.value) throw thrown;
        logger.warn(
          { err: toError(thrown), records: group.length },
          'dead-lettering a batch failed; one by one',
        );
      }
    }
    for (const { message, reason } of group) {
      const outcome = await sendDeadLetter(target, message, reason, heartbeat, logger, closing);
      if (outcome === 'dead_lettered')
        logger.warn(
          { partition: message.partition, offset: message.offset, reason },
          'dead-lettered commit result',
        );
      outcomes.push(outcome);
    }
  }
  return outcomes;
}
