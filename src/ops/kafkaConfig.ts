import { boolean, type Env, optional, text } from './configValues.js';
import { ConfigError } from './errors.js';
import { configFile, secretValue } from './secretValue.js';

/** SASL mechanisms the runner's Kafka client speaks (KAFKA_SASL_MECHANISM). */
export type KafkaSaslMechanism = 'scram-sha-256' | 'scram-sha-512' | 'plain';

/** Where Kafka is and how the runner proves who it is there. */
export interface KafkaTarget {
  brokers: string[];
  sasl?: { mechanism: KafkaSaslMechanism; username: string; password: string };
  /** TLS to the brokers (KAFKA_TLS), trusting KAFKA_TLS_CA_FILE's CAs when given, the system's otherwise. */
  tls?: { ca?: string };
}

const MECHANISMS: KafkaSaslMechanism[] = ['scram-sha-256', 'scram-sha-512', 'plain'];

function brokers(env: Env, required: boolean): string[] {
  if (!required && !optional(env, 'KAFKA_BROKERS')) return [];
  const raw = text(env, 'KAFKA_BROKERS');
  const list = raw.split(',').map((b) => b.trim());
  for (const broker of list) {
    if (!/^[A-Za-z0-9.\-_[\]:]+:\d{1,5}$/.test(broker)) {
      throw new ConfigError(`KAFKA_BROKERS must be a comma-separated list of host:port, got "${broker}"`);
    }
  }
  return list;
}

function sasl(env: Env): KafkaTarget['sasl'] {
  const raw = optional(env, 'KAFKA_SASL_MECHANISM')?.toLowerCase();
  const username = optional(env, 'KAFKA_SASL_USERNAME');
  const password = secretValue(env, 'KAFKA_SASL_PASSWORD');
  if (raw === undefined) {
    if (username !== undefined || password !== undefined)
      throw new ConfigError('KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD need KAFKA_SASL_MECHANISM');
    return undefined;
  }
  const mechanism = MECHANISMS.find((m) => m === raw);
  if (!mechanism)
    throw new ConfigError(`KAFKA_SASL_MECHANISM must be one of ${MECHANISMS.join(', ')}, got "${raw}"`);
  if (username === undefined) throw new ConfigError('KAFKA_SASL_MECHANISM needs KAFKA_SASL_USERNAME');
  if (password === undefined)
    throw new ConfigError('KAFKA_SASL_MECHANISM needs KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE');
  return { mechanism, username, password };
}

function tls(env: Env): KafkaTarget['tls'] {
  const caFile = optional(env, 'KAFKA_TLS_CA_FILE');
  if (!boolean(env, 'KAFKA_TLS', caFile !== undefined)) return undefined;
  if (caFile === undefined) return {};
  return { ca: configFile('KAFKA_TLS_CA_FILE', caFile) };
}

// KAFKA_BROKERS with KAFKA_SASL_* and KAFKA_TLS*: what every Kafka client of the runner connects with.
export function kafkaTarget(env: Env, required: boolean): KafkaTarget {
  // A command that does not use Kafka (`ci-runner status`, `build`) ignores its credentials, even half-set ones.
  if (!required) return { brokers: brokers(env, false) };
  const auth = sasl(env);
  const secure = tls(env);
  return {
    brokers: brokers(env, required),
    ...(auth ? { sasl: auth } : {}),
    ...(secure ? { tls: secure } : {}),
  };
}
