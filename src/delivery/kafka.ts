// The module that knows kafkajs (with kafkaTopics.ts, its admin side): swap the client here (kafkajs is unmaintained since 2023).
import {
  type Consumer,
  type IHeaders,
  type Kafka,
  type KafkaMessage,
  Partitioners,
  type Producer,
} from 'kafkajs';
import type { Logger } from '../ops/logger.js';
import { type KafkaAt, kafkaRefusal } from './kafkaRefusal.js';

export interface OutgoingMessage {
  /** Bytes are sent as they are; null sends a record without a key. */
  key: string | Buffer | null;
  value: Buffer;
  headers?: Record<string, string | Buffer>;
  /** The record's create time in ms; the producer's clock when unset. */
  timestamp?: number;
}

export interface IncomingMessage {
  topic: string;
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  /** Each header's first value, as the bytes that arrived. */
  headers: Record<string, Buffer>;
  /** The record's timestamp in ms (its producer's create time, unless the topic stamps append time); undefined if none. */
  timestamp: number | undefined;
}

export interface Publisher {
  send(topic: string, messages: OutgoingMessage[]): Promise<void>;
  /** The producer is connected to the cluster right now. */
  connected(): boolean;
  close(): Promise<void>;
}

export interface Subscription {
  close(): Promise<void>;
}

export interface SubscribeOptions {
  brokers: KafkaAt;
  clientId: string;
  groupId: string;
  topic: string;
  /** earliest: from the group's committed offset or the start; now: only messages produced after subscribing. */
  startAt: 'earliest' | 'now';
  logger: Logger;
  /** Resolves once the message is handled; only then is its offset committed. Call heartbeat while waiting long. */
  onMessage?: (message: IncomingMessage, heartbeat: () => Promise<void>) => Promise<void>;
  /**
   * Instead of onMessage: handles up to BATCH_MAX messages of one partition, in offset order, at once; their offsets
   * are committed together once it resolves.
   */
  onBatch?: (messages: IncomingMessage[], heartbeat: () => Promise<void>) => Promise<void>;
}

/** The most messages one onBatch call gets. */
export const BATCH_MAX = 1_000;

import { client } from './kafkaClient.js';

export { type KafkaAt, kafkaRefusal } from './kafkaRefusal.js';

function headersOf(headers: IHeaders | undefined): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    const first = Array.isArray(value) ? value[0] : value;
    if (first !== undefined) out[name] = Buffer.isBuffer(first) ? first : Buffer.from(first);
  }
  return out;
}

// A consumed kafkajs message as the rest of ci-runner sees it.
function incoming(topic: string, partition: number, message: KafkaMessage): IncomingMessage {
  return {
    topic,
    partition,
    offset: message.offset,
    key: message.key,
    value: message.value,
    headers: headersOf(message.headers),
    timestamp: recordTime(message.timestamp),
  };
}

// A record's timestamp as ms, or undefined when the record has none (-1: written by a client older than Kafka 0.10).
function recordTime(timestamp: string | undefined): number | undefined {
  const ms = Number(timestamp);
  return Number.isSafeInteger(ms) && ms >= 0 ? ms : undefined;
}

/** Kafka's answers to a heartbeat that mean the group is rebalancing: the member must give its partitions up. */
const REBALANCING = new Set([
  'REBALANCE_IN_PROGRESS',
  'UNKNOWN_MEMBER_ID',
  'ILLEGAL_GENERATION',
  'FENCED_INSTANCE_ID',
]);

// Sends a heartbeat while a message waits on something else; a rebalance is thrown (so the batch stops and its
// partitions go to the group's new owner at once), any other failure is left for the next heartbeat.
export async function heartbeatDuringWait(heartbeat: () => Promise<void>): Promise<void> {
  try {
    await heartbeat();
  } catch (thrown) {
    for (let cause = thrown as { type?: string; cause?: unknown } | undefined; cause; ) {
      if (cause.type && REBALANCING.has(cause.type)) throw thrown;
      if (/rebalanc/i.test(String((cause as { message?: string }).message))) throw thrown;
      cause = cause.cause as typeof cause;
    }
  }
}

/** A send the broker refused because the record is larger than the topic accepts. */
export function isTooLarge(error: unknown): boolean {
  for (let cause = error as { type?: string; cause?: unknown } | undefined; cause; ) {
    if (cause.type === 'MESSAGE_TOO_LARGE' || cause.type === 'RECORD_LIST_TOO_LARGE') return true;
    if (/larger than the max message size/.test(String((cause as { message?: string }).message))) return true;
    cause = cause.cause as typeof cause;
  }
  return false;
}

// Connects a producer that waits for all in-sync replicas before a send resolves.
export async function connectPublisher(
  brokers: KafkaAt,
  clientId: string,
  logger: Logger,
): Promise<Publisher> {
  const producer: Producer = client(brokers, clientId, logger).producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
  });
  let isConnected = false;
  producer.on(producer.events.CONNECT, () => {
    isConnected = true;
  });
  producer.on(producer.events.DISCONNECT, () => {
    isConnected = false;
  });
  await producer.connect().catch((error: unknown) => {
    throw kafkaRefusal(error, brokers, 'connect a producer');
  });
  let closed = false;
  return {
    connected: () => isConnected,
    async send(topic, messages) {
      await producer.send({
        topic,
        acks: -1,
        messages: messages.map(({ timestamp, ...message }) =>
          timestamp === undefined ? message : { ...message, timestamp: String(timestamp) },
        ),
      });
    },
    async close() {
      if (closed) return;
      closed = true;
      await producer.disconnect();
    },
  };
}

async function highWatermarks(
  kafka: Kafka,
  topic: string,
): Promise<Array<{ partition: number; offset: string }>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return (await admin.fetchTopicOffsets(topic)).map(({ partition, high }) => ({ partition, offset: high }));
  } finally {
    await admin.disconnect();
  }
}

// Consumes one topic in a group, committing each message's offset only after onMessage resolved for it.
export async function subscribe(options: SubscribeOptions): Promise<Subscription> {
  const kafka = client(options.brokers, options.clientId, options.logger);
  const consumer: Consumer = kafka.consumer({ groupId: options.groupId, allowAutoTopicCreation: false });
  const refused = (operation: string) => (error: unknown) => {
    throw kafkaRefusal(error, options.brokers, operation);
  };
  const startOffsets =
    options.startAt === 'now'
      ? await highWatermarks(kafka, options.topic).catch(refused(`read the offsets of ${options.topic}`))
      : [];
  await consumer.connect().catch(refused('connect a consumer'));
  await consumer
    .subscribe({ topic: options.topic, fromBeginning: true })
    .catch(refused(`read ${options.topic} in group ${options.groupId}`));
  const { onMessage, onBatch } = options;
  const commitAfter = (topic: string, partition: number, offset: string) =>
    consumer.commitOffsets([{ topic, partition, offset: (BigInt(offset) + 1n).toString() }]);
  if (onBatch) {
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
        const { topic, partition } = batch;
        for (let from = 0; from < batch.messages.length; from += BATCH_MAX) {
          if (!isRunning() || isStale()) return;
          const chunk = batch.messages.slice(from, from + BATCH_MAX);
          await onBatch(
            chunk.map((message) => incoming(topic, partition, message)),
            heartbeat,
          );
          const last = (chunk.at(-1) as { offset: string }).offset;
          resolveOffset(last);
          await commitAfter(topic, partition, last);
        }
      },
    });
  } else if (onMessage) {
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ topic, partition, message, heartbeat }) => {
        await onMessage(incoming(topic, partition, message), heartbeat);
        await commitAfter(topic, partition, message.offset);
      },
    });
  } else {
    throw new Error('subscribe needs onMessage or onBatch');
  }
  for (const { partition, offset } of startOffsets)
    consumer.seek({ topic: options.topic, partition, offset });
  let closed = false;
  return {
    async close() {
      if (closed) return;
      closed = true;
      await consumer.disconnect();
    },
  };
}
