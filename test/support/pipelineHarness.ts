import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { BuildReport } from '../../src/delivery/contracts.js';
import { type GitServer, startGitServer } from '../../src/git/gitServer.js';
import { loadConfig } from '../../src/ops/config.js';
import { configuredOptions, type PipelineOptions, runPipeline } from '../../src/pipeline/runPipeline.js';
import { ensureToolchain } from '../../src/pipeline/toolchain.js';
import { releaseBuildDisksUnder } from '../../src/sandbox/buildDisk.js';
import { prepareSandbox, sandboxRequest } from '../../src/sandbox/sandboxHost.js';
import { createFixtureRepo, type FixtureRepo } from './fixtureRepo.js';
import { testLogger } from './harness.js';

/** Runs the real stage pipeline (no Kafka, no Redis) on fixture repositories served over HTTP. */
export interface PipelineHarness {
  root: string;
  newRepo(name: string): Promise<FixtureRepo>;
  build(repo: FixtureRepo, sha: string, overrides?: Partial<PipelineOptions>): Promise<BuildReport>;
  /** Lines the build wrote to its job log. */
  lastLog: string[];
  close(): Promise<void>;
}

// Sets up a git server, a shared cache and the runner's toolchain, configured as a user would through loadConfig.
export async function createPipelineHarness(env: Record<string, string> = {}): Promise<PipelineHarness> {
  const root = await mkdtemp(join(tmpdir(), 'pipeline-test-'));
  const served = join(root, 'served');
  await mkdir(served);
  const git: GitServer = await startGitServer(served);
  const config = loadConfig({
    ...process.env,
    REDIS_URL: 'redis://127.0.0.1:1',
    KAFKA_BROKERS: '127.0.0.1:1',
    ARTEFACT_DIR: join(root, 'artefacts'),
    CACHE_DIR: process.env.CI_RUNNER_TEST_CACHE_DIR ?? resolve('.cache/test'),
    WORK_DIR: join(root, 'work'),
    ...env,
  });
  const logger = testLogger('pipeline');
  const toolchain = await ensureToolchain(config.pythonBin, config.cacheDir, logger, {
    path: config.hostPath,
    inherited: config.buildEnv,
  });
  const sandbox = await prepareSandbox(sandboxRequest(config.sandbox, config.hostPath, toolchain), logger);
  const repos: FixtureRepo[] = [];
  const harness: PipelineHarness = {
    root,
    lastLog: [],
    async newRepo(name) {
      const repo = await createFixtureRepo(served, git.baseUrl, name);
      repos.push(repo);
      return repo;
    },
    async build(repo, sha, overrides = {}) {
      const lines: string[] = [];
      harness.lastLog = lines;
      return runPipeline(
        { taskId: 't', commitSha: sha, branchName: 'main', repositoryUrl: repo.url, attempt: 1 },
        {
          toolchain,
          sandbox,
          ...configuredOptions(config),
          logger,
          signal: new AbortController().signal,
          onLog: (line) => lines.push(line),
          ...overrides,
        },
      );
    },
    async close() {
      await git.close();
      await Promise.all(repos.map((repo) => repo.cleanup()));
      await releaseBuildDisksUnder(root);
      await rm(root, { recursive: true, force: true });
    },
  };
  return harness;
}
