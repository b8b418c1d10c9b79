import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { kafkaRefusal } from '../../src/delivery/kafka.js';
import { ConfigError } from '../../src/ops/errors.js';
import { kafkaTarget } from '../../src/ops/kafkaConfig.js';
import { redisUrl } from '../../src/ops/storeConfig.js';

let dir: string;
let secretFile: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ci-runner-credentials-'));
  secretFile = join(dir, 'secret');
  await writeFile(secretFile, 'p@ss word/1\n');
});

after(() => rm(dir, { recursive: true, force: true }));

const rejects = (run: () => unknown, message: RegExp) =>
  assert.throws(run, (error: unknown) => error instanceof ConfigError && message.test(error.message));

test('Kafka credentials: a mechanism, a user and a password (or its file); a command without Kafka ignores them', () => {
  const env = {
    KAFKA_BROKERS: 'k:9092',
    KAFKA_SASL_MECHANISM: 'SCRAM-SHA-512',
    KAFKA_SASL_USERNAME: 'worker',
  };
  assert.deepEqual(kafkaTarget({ ...env, KAFKA_SASL_PASSWORD_FILE: secretFile }, true), {
    brokers: ['k:9092'],
    sasl: { mechanism: 'scram-sha-512', username: 'worker', password: 'p@ss word/1' },
  });
  rejects(
    () => kafkaTarget(env, true),
    /KAFKA_SASL_MECHANISM needs KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE/,
  );
  rejects(
    () => kafkaTarget({ ...env, KAFKA_SASL_MECHANISM: 'gssapi', KAFKA_SASL_PASSWORD: 'x' }, true),
    /one of/,
  );
  rejects(
    () => kafkaTarget({ ...env, KAFKA_SASL_PASSWORD: 'x', KAFKA_SASL_PASSWORD_FILE: secretFile }, true),
    /KAFKA_SASL_PASSWORD and KAFKA_SASL_PASSWORD_FILE are both set/,
  );
  rejects(
    () => kafkaTarget({ ...env, KAFKA_SASL_PASSWORD_FILE: join(dir, 'missing') }, true),
    /KAFKA_SASL_PASSWORD_FILE names .*missing, which cannot be read \(ENOENT\)/,
  );
  assert.deepEqual(kafkaTarget(env, false), { brokers: ['k:9092'] });
  assert.deepEqual(kafkaTarget({ KAFKA_BROKERS: 'k:9093', KAFKA_TLS_CA_FILE: secretFile }, true).tls, {
    ca: 'p@ss word/1\n',
  });
});

test('Redis credentials go into the URL, encoded, from the password file', () => {
  const url = redisUrl(
    { REDIS_URL: 'redis://r:6379/2', REDIS_USERNAME: 'board', REDIS_PASSWORD_FILE: secretFile },
    true,
  );
  const parsed = new URL(url);
  assert.equal(decodeURIComponent(parsed.username), 'board');
  assert.equal(decodeURIComponent(parsed.password), 'p@ss word/1');
  assert.equal(parsed.pathname, '/2');
  rejects(
    () => redisUrl({ REDIS_URL: 'redis://a:b@r:6379', REDIS_PASSWORD: 'c' }, true),
    /already has a password/,
  );
  rejects(() => redisUrl({ REDIS_URL: 'redis://r:6379', REDIS_USERNAME: 'x' }, true), /REDIS_USERNAME needs/);
});

test("Kafka's refusals become one line naming the broker, the principal and the operation; nothing else changes", () => {
  const target = {
    brokers: ['k:9092'],
    sasl: { mechanism: 'scram-sha-256' as const, username: 'bridge', password: 'pw' },
  };
  const aggregate = Object.assign(new Error('Topic creation errors'), {
    errors: [{ type: 'TOPIC_AUTHORIZATION_FAILED', topic: 'build-reports' }],
  });
  const refused = kafkaRefusal(aggregate, target, 'create the topics');
  assert.ok(refused instanceof ConfigError);
  assert.equal(
    refused.message,
    'Kafka at k:9092 refused user "bridge" (scram-sha-256) to create the topics: not authorized on a topic',
  );
  const auth = Object.assign(new Error('SASL SCRAM SHA256 authentication failed'), {
    name: 'KafkaJSSASLAuthenticationError',
  });
  assert.match(String((kafkaRefusal(auth, target, 'connect') as Error).message), /authentication failed/);
  assert.ok(!String((kafkaRefusal(auth, target, 'connect') as Error).message).includes('pw'));
  const other = new Error('ECONNREFUSED');
  assert.equal(kafkaRefusal(other, target, 'connect'), other);
});
