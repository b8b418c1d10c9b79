import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type RunningBridge, startBridge } from '../../src/bridge/bridge.js';
import { encodeCommitResult } from '../../src/delivery/contracts.js';
import { connectPublisher, type Publisher } from '../../src/delivery/kafka.js';
import { ensureTopics } from '../../src/delivery/kafkaTopics.js';
import { type GitServer, startGitServer } from '../../src/git/gitServer.js';
import type { Config } from '../../src/ops/config.js';
import type { Closable } from '../../src/ops/lifecycle.js';
import type { Logger } from '../../src/ops/logger.js';
import { type RunningWorker, startWorker } from '../../src/worker/worker.js';
import { createFixtureRepo, type FixtureRepo } from './fixtureRepo.js';
import { createTestSpace, type TestSpace, testLogger } from './harness.js';
import { collectReports, type ReportCollector } from './reportCollector.js';

export interface Announcement {
  sha: string;
  repositoryUrl: string;
  branch?: string;
  status?: string;
  taskId?: string;
  /** The Kafka record's timestamp in ms (the producer's clock when unset). */
  at?: number;
}

/** The pieces around a ci-runner under test: a git server, the coding agent and the orchestrator. */
export interface RunnerHarness {
  space: TestSpace;
  logger: Logger;
  reports: ReportCollector;
  /** A fresh fixture repository on the git server, so no test builds on another's commits. */
  newRepo(name: string): Promise<FixtureRepo>;
  /** Produces a CommitResult keyed by its sha, as the coding agent does (task id defaults to task-<sha prefix>). */
  announce(commit: Announcement): Promise<void>;
  /** Produces raw bytes to the commit-results topic (a null key sends none). */
  send(key: string | Buffer | null, value: Buffer, headers?: Record<string, Buffer>): Promise<void>;
  startBridge(): Promise<RunningBridge>;
  /** A worker with the space's config, changed as given (say, another WORKER_HOST_ID and CACHE_DIR). */
  startWorker(changes?: Partial<Config>): Promise<RunningWorker>;
  /** Closes the part with the harness, before the services it depends on. */
  track<T extends Closable>(part: T): T;
  close(): Promise<void>;
}

// Builds a private namespace on the real services (see createTestSpace) plus what talks to the runner from outside.
export async function createRunnerHarness(
  name: string,
  env: Record<string, string> = {},
): Promise<RunnerHarness> {
  const logger = testLogger(name);
  const space = await createTestSpace(env);
  const served = join(space.dir, 'served');
  await mkdir(served);
  const git: GitServer = await startGitServer(served);
  const { config } = space;
  // Topics exist before anyone subscribes (kafkajs cannot subscribe to a missing topic).
  await ensureTopics(
    config.kafka.brokers,
    [config.topicCommitResults, config.topicBuildReports, config.topicDeadLetter],
    logger,
  );
  const agent: Publisher = await connectPublisher(space.config.kafka.brokers, 'test-agent', logger);
  const reports = await collectReports(space.config.kafka.brokers, space.config.topicBuildReports, logger);
  const repos: FixtureRepo[] = [];
  const parts: Closable[] = [];
  const send = (key: string | Buffer | null, value: Buffer, headers?: Record<string, Buffer>) =>
    agent.send(space.config.topicCommitResults, [{ key, value, headers }]);
  const harness: RunnerHarness = {
    space,
    logger,
    reports,
    async newRepo(repoName) {
      const repo = await createFixtureRepo(served, git.baseUrl, repoName);
      repos.push(repo);
      return repo;
    },
    announce: ({
      sha,
      repositoryUrl,
      branch = 'main',
      status = 'SUCCESS',
      taskId = `task-${sha.slice(0, 6)}`,
      at,
    }) =>
      agent.send(space.config.topicCommitResults, [
        {
          key: sha,
          value: encodeCommitResult({ taskId, commitSha: sha, branchName: branch, status, repositoryUrl }),
          timestamp: at,
        },
      ]),
    send,
    startBridge: async () => harness.track(await startBridge(space.config, logger)),
    startWorker: async (changes = {}) =>
      harness.track(await startWorker({ ...space.config, ...changes }, logger)),
    track(part) {
      parts.push(part);
      return part;
    },
    async close() {
      await Promise.all([reports.close(), agent.close()]);
      await Promise.all(parts.map((part) => part.close()));
      await git.close();
      await Promise.all(repos.map((repo) => repo.cleanup()));
      await space.cleanup();
    },
  };
  return harness;
}
