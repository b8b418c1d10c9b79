import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type Config, loadConfig } from '../../src/ops/config.js';
import { createLogger, type Logger } from '../../src/ops/logger.js';
import { releaseBuildDisksUnder } from '../../src/sandbox/buildDisk.js';
import { noSandbox } from '../../src/sandbox/buildSandbox.js';
import type { StageContext } from '../../src/stages/types.js';

// The test process's own logger: quiet unless TEST_LOG_LEVEL asks for more.
export function testLogger(name: string): Logger {
  return createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn', pretty: false, name });
}

// What a stage gets when a test runs it on its own: no sandbox, job-log lines collected into `lines`.
export function stageContext(name: string, buildDir: string, lines: string[] = []): StageContext {
  return {
    logger: testLogger(name),
    signal: new AbortController().signal,
    buildDir,
    log: (line) => lines.push(line),
    sandbox: noSandbox(),
  };
}

/** A private namespace (topics, queue, directories) for one test file against the shared real services. */
export interface TestSpace {
  config: Readonly<Config>;
  dir: string;
  cleanup(): Promise<void>;
}

// Builds a config as a user would set it, with topic and queue names no other test uses.
export async function createTestSpace(overrides: Record<string, string> = {}): Promise<TestSpace> {
  const id = randomUUID().slice(0, 8);
  const dir = await mkdtemp(join(tmpdir(), `ci-runner-test-${id}-`));
  const env = {
    // The machine's own settings (TLS trust, package index) as an operator's deployment would have them.
    ...process.env,
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:16379',
    KAFKA_BROKERS: process.env.KAFKA_BROKERS ?? '127.0.0.1:19092',
    TOPIC_COMMIT_RESULTS: `commit-results-${id}`,
    TOPIC_BUILD_REPORTS: `build-reports-${id}`,
    TOPIC_DEAD_LETTER: `commit-results-${id}.dlq`,
    KAFKA_GROUP_ID: `ci-runner-bridge-${id}`,
    QUEUE_NAME: `builds-${id}`,
    ARTEFACT_DIR: join(dir, 'artefacts'),
    CACHE_DIR: process.env.CI_RUNNER_TEST_CACHE_DIR ?? resolve('.cache/test'),
    WORK_DIR: join(dir, 'work'),
    WORKER_CONCURRENCY: '2',
    WORKER_METRICS_PORT: '0',
    BRIDGE_METRICS_PORT: '0',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
    ...overrides,
  };
  return {
    config: loadConfig(env),
    dir,
    // A test that killed a worker may leave its builds' filesystems mounted: unmounted before the directory goes.
    cleanup: async () => {
      await releaseBuildDisksUnder(dir);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
