import { ConfigError } from '../ops/errors.js';
import type { KafkaTarget } from '../ops/kafkaConfig.js';

/** Where Kafka is: the configured target with its credentials, or (tests, tools) a bare list of brokers. */
export type KafkaAt = Readonly<KafkaTarget> | string[];

export function targetOf(at: KafkaAt): Readonly<KafkaTarget> {
  return Array.isArray(at) ? { brokers: at } : at;
}

/** Kafka's answers that mean the runner's credentials or permissions are wrong: retrying cannot help. */
const REFUSALS: Record<string, string> = {
  SASL_AUTHENTICATION_FAILED: 'authentication failed (check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD)',
  ILLEGAL_SASL_STATE: 'SASL is not enabled on this listener (check KAFKA_SASL_MECHANISM and KAFKA_TLS)',
  UNSUPPORTED_SASL_MECHANISM: 'the broker does not offer this SASL mechanism (check KAFKA_SASL_MECHANISM)',
  TOPIC_AUTHORIZATION_FAILED: 'not authorized on a topic',
  GROUP_AUTHORIZATION_FAILED: 'not authorized on the consumer group',
  CLUSTER_AUTHORIZATION_FAILED: 'not authorized on the cluster',
};

// A refusal by Kafka as one line naming the broker, the principal and what was refused; any other error unchanged.
export function kafkaRefusal(error: unknown, at: KafkaAt, operation: string): unknown {
  type Cause = { name?: string; type?: string; cause?: unknown; errors?: unknown[] };
  // An aggregate (createTopics') holds its errors in a list: the first refusal among them counts.
  const listed = (error as Cause | undefined)?.errors;
  for (const each of Array.isArray(listed) ? listed : []) {
    const refusal = kafkaRefusal(each, at, operation);
    if (refusal !== each) return refusal;
  }
  for (let cause = error as Cause | undefined; cause; ) {
    const why =
      cause.name === 'KafkaJSSASLAuthenticationError'
        ? REFUSALS.SASL_AUTHENTICATION_FAILED
        : cause.type
          ? REFUSALS[cause.type]
          : undefined;
    if (why) {
      const target = targetOf(at);
      const who = target.sasl
        ? `user "${target.sasl.username}" (${target.sasl.mechanism})`
        : 'an anonymous client';
      return new ConfigError(`Kafka at ${target.brokers.join(',')} refused ${who} to ${operation}: ${why}`);
    }
    cause = cause.cause as typeof cause;
  }
  return error;
}
