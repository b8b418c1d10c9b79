import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import git from 'isomorphic-git';
import http from 'isomorphic-git/http/node';
import { loadConfig } from '../config.js';
import { CiError, toError } from '../errors.js';
import { formatReport } from '../formatReport.js';
import type { GitServer } from '../gitServer.js';
import { createLogger } from '../logger.js';
import { configuredOptions, runPipeline } from '../pipeline.js';
import { erroredReport } from '../report.js';
import { prepareSandbox, sandboxRequest } from '../sandbox/sandboxHost.js';
import { ensureToolchain } from '../stages/toolchain.js';
import { parseCommand } from './parseCommand.js';
import { serveLocalRepository } from './serveLocalRepository.js';

export const BUILD_USAGE = `usage: ci-runner build <repo-url-or-local-path> [--sha S] [--branch B] [--json]
Runs the build stages locally, without Kafka or Redis, and prints the report.
  --sha S      commit to build (default: the branch tip; for a local path, HEAD)
  --branch B   branch the commit is on (default: a local path's current branch)
  --json       print the report as JSON instead of a summary
Exit status: 0 PASSED, 1 FAILED, 2 ERRORED.`;

const EXIT = { PASSED: 0, FAILED: 1, ERRORED: 2 } as const;

interface Target {
  url: string;
  sha: string;
  branch: string;
  server?: GitServer;
}

// A local working copy is served over smart HTTP for the checkout stage; a URL is used as it is.
async function target(
  repo: string,
  sha: string | undefined,
  branch: string | undefined,
  path: string,
): Promise<Target> {
  const local = await stat(repo).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (local) {
    const served = await serveLocalRepository(resolve(repo), { path });
    return {
      url: served.url,
      sha: sha ?? served.head,
      branch: branch ?? served.branch,
      server: served.server,
    };
  }
  if (sha) return { url: repo, sha, branch: branch ?? 'main' };
  if (!branch)
    throw new CiError('INVALID_MESSAGE', 'a repository URL needs --sha or --branch', { retriable: false });
  const refs = await git.listServerRefs({ http, url: repo, prefix: `refs/heads/${branch}` });
  const tip = refs.find((ref) => ref.ref === `refs/heads/${branch}`);
  if (!tip)
    throw new CiError('COMMIT_MISSING', `branch ${branch} not found at ${repo}`, { retriable: false });
  return { url: repo, sha: tip.oid, branch };
}

// `ci-runner build`: the whole stage pipeline on one commit, on this machine; prints the report, exits by status.
export async function buildCommand(argv: string[]): Promise<number> {
  const args = parseCommand(argv, BUILD_USAGE, {
    sha: { type: 'string' },
    branch: { type: 'string' },
    json: { type: 'boolean', default: false },
  });
  if (!args) return 0;
  const repo = args.positionals[0];
  if (!repo) {
    process.stderr.write(`${BUILD_USAGE}\n`);
    return 2;
  }
  const config = loadConfig(process.env, process.cwd(), []);
  const logger = createLogger({ level: 'warn', pretty: false, name: 'build' });
  const chosen = await target(
    repo,
    args.values.sha as string | undefined,
    args.values.branch as string | undefined,
    config.hostPath,
  );
  const input = {
    taskId: 'local',
    commitSha: chosen.sha,
    branchName: chosen.branch,
    repositoryUrl: chosen.url,
    attempt: 1,
  };
  const started = performance.now();
  const progress = process.stderr.isTTY === true;
  let report: Awaited<ReturnType<typeof runPipeline>>;
  try {
    const toolchain = await ensureToolchain(config.pythonBin, config.cacheDir, logger, {
      path: config.hostPath,
      inherited: config.buildEnv,
    });
    const sandbox = await prepareSandbox(sandboxRequest(config.sandbox, config.hostPath, toolchain), logger);
    report = await runPipeline(input, {
      toolchain,
      sandbox,
      ...configuredOptions(config),
      logger,
      signal: new AbortController().signal,
      onStage: (stage, result) => {
        if (!progress) return;
        const seconds = ((performance.now() - started) / 1000).toFixed(1);
        process.stderr.write(
          `[${seconds}s] ${stage} ${result ? `${result.outcome}: ${result.summary}` : '...'}\n`,
        );
      },
    });
  } catch (thrown) {
    report = erroredReport(input, toError(thrown), Math.round(performance.now() - started));
  } finally {
    await chosen.server?.close();
  }
  const shown = { ...report, repositoryUrl: chosen.server ? resolve(repo) : report.repositoryUrl };
  process.stdout.write(`${args.values.json ? JSON.stringify(shown, null, 2) : formatReport(shown)}\n`);
  return EXIT[report.status];
}
