import { Kafka, logLevel, type SASLOptions } from 'kafkajs';
import type { Logger } from '../ops/logger.js';
import { type KafkaAt, targetOf } from './kafkaRefusal.js';

/** A kafkajs client logging through pino (for kafka.ts and kafkaTopics.ts only). */
export function client(at: KafkaAt, clientId: string, logger: Logger): Kafka {
  const { brokers, sasl, tls } = targetOf(at);
  const toPino = (level: logLevel) =>
    level === logLevel.ERROR
      ? 'error'
      : level === logLevel.WARN
        ? 'warn'
        : level === logLevel.INFO
          ? 'info'
          : 'debug';
  return new Kafka({
    clientId,
    brokers,
    ...(sasl ? { sasl: { ...sasl } as SASLOptions } : {}),
    ...(tls ? { ssl: tls.ca ? { ca: [tls.ca] } : true } : {}),
    logLevel: logLevel.WARN,
    retry: { initialRetryTime: 300, retries: 8 },
    logCreator:
      () =>
      ({ level, log }) => {
        const { message, ...extra } = log;
        logger[toPino(level)]({ kafka: extra }, `kafka: ${message}`);
      },
  });
}
