// Creates ci-runner's topics and each role's Kafka ACLs, as the admin (SCRAM-SHA-256). Idempotent: run on every start
// of the secure services. KAFKA_BROKERS, KAFKA_ADMIN_PASSWORD_FILE; topic and group names as the runner reads them.
//   orchestrator  writes commit-results, reads build-reports (its groups: ci-runner-enqueue-*, orchestrator*)
//   bridge        reads commit-results (group KAFKA_GROUP_ID), writes the dead-letter topic and build-reports (the
//                 reports of the builds it cancels as superseded)
//   worker        writes build-reports
// Nobody else may write build-reports. Every role may describe the topics it uses and read their limits.
import { readFileSync } from 'node:fs';
import kafkajs from 'kafkajs';

const { Kafka, logLevel, AclResourceTypes, AclOperationTypes, AclPermissionTypes, ResourcePatternTypes } =
  kafkajs;
const env = process.env;
const topics = {
  commitResults: env.TOPIC_COMMIT_RESULTS || 'commit-results',
  buildReports: env.TOPIC_BUILD_REPORTS || 'build-reports',
  deadLetter: env.TOPIC_DEAD_LETTER || 'commit-results.dlq',
};
const bridgeGroup = env.KAFKA_GROUP_ID || 'ci-runner-bridge';

const { READ, WRITE, DESCRIBE, DESCRIBE_CONFIGS } = AclOperationTypes;
const topic = (name, ...operations) => operations.map((operation) => ({ type: 'topic', name, operation }));
const group = (name, pattern, ...operations) =>
  operations.map((operation) => ({ type: 'group', name, pattern, operation }));

/** What each role may do, and nothing else. */
export const ROLES = {
  orchestrator: [
    ...topic(topics.commitResults, WRITE, DESCRIBE),
    ...topic(topics.buildReports, READ, DESCRIBE),
    ...topic(topics.deadLetter, DESCRIBE),
    ...group('ci-runner-enqueue-', 'prefixed', READ, DESCRIBE),
    ...group('orchestrator', 'prefixed', READ, DESCRIBE),
  ],
  bridge: [
    ...topic(topics.commitResults, READ, DESCRIBE, DESCRIBE_CONFIGS),
    ...topic(topics.deadLetter, WRITE, DESCRIBE, DESCRIBE_CONFIGS),
    ...topic(topics.buildReports, WRITE, DESCRIBE, DESCRIBE_CONFIGS),
    ...group(bridgeGroup, 'literal', READ, DESCRIBE),
  ],
  worker: [...topic(topics.buildReports, WRITE, DESCRIBE, DESCRIBE_CONFIGS)],
};

// As the runner reads a *_FILE secret: one trailing newline dropped, nothing else.
const password = readFileSync(env.KAFKA_ADMIN_PASSWORD_FILE, 'utf8').replace(/\r?\n$/, '');
const kafka = new Kafka({
  clientId: 'ci-runner-acls',
  brokers: env.KAFKA_BROKERS.split(','),
  sasl: { mechanism: 'scram-sha-256', username: 'admin', password },
  logLevel: logLevel.WARN,
  // Started beside Kafka (compose): waits for it to answer, about a minute.
  retry: { retries: 12, maxRetryTime: 8_000 },
});
const admin = kafka.admin();
await admin.connect();
try {
  const existing = new Set(await admin.listTopics());
  const missing = Object.values(topics).filter((name) => !existing.has(name));
  if (missing.length) {
    await admin.createTopics({ topics: missing.map((name) => ({ topic: name })), waitForLeaders: true });
    console.log(`created topics ${missing.join(', ')}`);
  }
  const acl = Object.entries(ROLES).flatMap(([role, rules]) =>
    rules.map((rule) => ({
      resourceType: rule.type === 'topic' ? AclResourceTypes.TOPIC : AclResourceTypes.GROUP,
      resourceName: rule.name,
      resourcePatternType:
        rule.pattern === 'prefixed' ? ResourcePatternTypes.PREFIXED : ResourcePatternTypes.LITERAL,
      principal: `User:${role}`,
      host: '*',
      operation: rule.operation,
      permissionType: AclPermissionTypes.ALLOW,
    })),
  );
  await admin.createAcls({ acl });
  console.log(`ACLs: ${acl.length} rules for ${Object.keys(ROLES).join(', ')}`);
} finally {
  await admin.disconnect();
}
