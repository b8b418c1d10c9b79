import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { startBridge } from '../src/bridge/bridge.js';
import { encodeCommitResult } from '../src/delivery/contracts.js';
import { connectPublisher } from '../src/delivery/kafka.js';
import { ensureTopics } from '../src/delivery/kafkaTopics.js';
import { buildJobId, connectRedis } from '../src/delivery/queue.js';
import { loadConfig } from '../src/ops/config.js';
import type { Logger } from '../src/ops/logger.js';

const BACKLOG = Number(process.env.BENCH_BACKLOG ?? 20_000);

async function until(done: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const started = Date.now();
  while (!(await done())) {
    if (Date.now() - started > timeoutMs) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

// A backlog of CommitResults produced before the bridge starts (the state after an outage), drained into Redis:
// the bridge's rate against BullMQ's own bulk add of the same jobs, measured in the same run. Needs the local
// Redis and Kafka (npm run services:up).
export async function benchBridgeDrain(logger: Logger): Promise<string> {
  const id = randomUUID().slice(0, 8);
  const config = loadConfig({
    ...process.env,
    TOPIC_COMMIT_RESULTS: `bench-commits-${id}`,
    TOPIC_BUILD_REPORTS: `bench-reports-${id}`,
    TOPIC_DEAD_LETTER: `bench-commits-${id}.dlq`,
    KAFKA_GROUP_ID: `bench-bridge-${id}`,
    QUEUE_NAME: `bench-builds-${id}`,
    MAX_WAITING_JOBS: String(BACKLOG * 2),
    BRIDGE_METRICS_PORT: '0',
    LOG_LEVEL: 'warn',
  });
  const redis = connectRedis(config.redis.url);
  // Refused connections while it is probed are the answer below, not unhandled errors on the console.
  const quiet = () => undefined;
  redis.on('error', quiet);
  const reachable = await Promise.race([
    redis.ping().then(() => true),
    new Promise<false>((resolve) => setTimeout(() => resolve(false), 3_000)),
  ]);
  if (!reachable) {
    redis.disconnect();
    throw new Error(`Redis at ${config.redis.url} does not answer`);
  }
  redis.off('error', quiet);
  await ensureTopics(config.kafka.brokers, [config.topicCommitResults, config.topicDeadLetter], logger);
  const publisher = await connectPublisher(config.kafka.brokers, 'bench-agent', logger);
  const shas = Array.from({ length: BACKLOG }, (_, i) => `${id}${i.toString(16).padStart(32, '0')}`);
  for (let from = 0; from < shas.length; from += 1_000) {
    await publisher.send(
      config.topicCommitResults,
      shas.slice(from, from + 1_000).map((sha) => ({
        key: sha,
        value: encodeCommitResult({
          taskId: `t-${sha.slice(-6)}`,
          commitSha: sha,
          branchName: 'main',
          status: 'SUCCESS',
          repositoryUrl: 'http://127.0.0.1:9/bench.git',
        }),
      })),
    );
  }
  await publisher.close();
  const queue = new Queue(config.queueName, { connection: redis });
  const baselineQueue = new Queue(`${config.queueName}-baseline`, { connection: redis });
  try {
    const started = performance.now();
    const bridge = await startBridge(config, logger);
    await until(async () => (await queue.getWaitingCount()) >= BACKLOG, 300_000);
    const bridgeMs = performance.now() - started;
    await bridge.close();
    const baselineStarted = performance.now();
    for (let from = 0; from < shas.length; from += 1_000) {
      await baselineQueue.addBulk(
        shas
          .slice(from, from + 1_000)
          .map((sha) => ({ name: 'build', data: { commitSha: sha }, opts: { jobId: buildJobId(sha) } })),
      );
    }
    const baselineMs = performance.now() - baselineStarted;
    const rate = (ms: number) => Math.round((BACKLOG / ms) * 1000);
    return `${`bridge drains ${BACKLOG} queued CommitResults`.padEnd(44)} ${bridgeMs.toFixed(0).padStart(6)} ms   ${'BullMQ addBulk of the same jobs'.padEnd(34)} ${baselineMs.toFixed(0).padStart(6)} ms   ratio ${(bridgeMs / baselineMs).toFixed(2)}  (${rate(bridgeMs)}/s vs ${rate(baselineMs)}/s; target >= 10000/s, start-up included)`;
  } finally {
    await queue.obliterate({ force: true }).catch(() => undefined);
    await baselineQueue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
    await baselineQueue.close();
    redis.disconnect();
  }
}
