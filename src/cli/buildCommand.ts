import { stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import git from 'isomorphic-git';
import http from 'isomorphic-git/http/node';
import type { GitServer } from '../git/gitServer.js';
import { loadConfig } from '../ops/config.js';
import { toError } from '../ops/errors.js';
import { createLogger } from '../ops/logger.js';
import { erroredReport } from '../pipeline/report.js';
import { configuredOptions, runPipeline } from '../pipeline/runPipeline.js';
import { ensureToolchain } from '../pipeline/toolchain.js';
import { prepareSandbox, sandboxRequest } from '../sandbox/sandboxHost.js';
import { EXIT, UnavailableError, UsageError } from './exitCodes.js';
import { formatReport } from './formatReport.js';
import { parseCommand } from './parseCommand.js';
import { NotARepositoryError, serveLocalRepository } from './serveLocalRepository.js';
import { BUILD_USAGE } from './usage.js';

const SHA = /^[0-9a-f]{40}$/;

// Where `ci-runner build` keeps what it makes when the environment does not say: the user's XDG directories, not
// whatever directory the command was typed in.
function userDirectories(env: NodeJS.ProcessEnv): Record<string, string> {
  const home = env.HOME || homedir();
  const cache = env.XDG_CACHE_HOME || join(home, '.cache');
  const data = env.XDG_DATA_HOME || join(home, '.local', 'share');
  return { CACHE_DIR: join(cache, 'ci-runner'), ARTEFACT_DIR: join(data, 'ci-runner', 'artefacts') };
}

// The branch tip at a URL; bad URLs, missing repositories and branches are usage errors, network faults not.
async function branchTip(url: string, branch: string): Promise<string> {
  let refs: Awaited<ReturnType<typeof git.listServerRefs>>;
  try {
    refs = await git.listServerRefs({ http, url, prefix: 'refs/heads/' });
  } catch (thrown) {
    const error = toError(thrown) as Error & { data?: { statusCode?: number; statusMessage?: string } };
    const status = error.data?.statusCode;
    if (status)
      throw new UsageError(`${url}: the server answered ${status} ${error.data?.statusMessage ?? ''}`.trim());
    throw new UnavailableError(`cannot reach ${url}: ${error.message}`);
  }
  const tip = refs.find((ref) => ref.ref === `refs/heads/${branch}`);
  if (!tip) {
    const names = refs.map((ref) => ref.ref.replace('refs/heads/', '')).slice(0, 10);
    throw new UsageError(
      `branch ${branch} not found at ${url} (it has: ${names.join(', ') || 'no branches'})`,
    );
  }
  return tip.oid;
}

interface Target {
  url: string;
  /** A local repository's git cache is keyed by its path, not by the throw-away server's URL. */
  cacheKey?: string;
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
  if (sha !== undefined && !SHA.test(sha))
    throw new UsageError(`--sha must be 40 hex characters, got "${sha}"`);
  const local = await stat(repo).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (local) {
    const served = await serveLocalRepository(resolve(repo), { path }).catch((error: Error) => {
      throw error instanceof NotARepositoryError ? new UsageError(error.message) : error;
    });
    return {
      url: served.url,
      cacheKey: `local:${served.top}`,
      sha: sha ?? served.head,
      branch: branch ?? served.branch,
      server: served.server,
    };
  }
  if (!/^https?:\/\/[^/]/.test(repo)) {
    throw new UsageError(`${repo} is neither a local directory nor an http(s) repository URL`);
  }
  if (sha) return { url: repo, sha, branch: branch ?? 'main' };
  if (!branch) throw new UsageError('a repository URL needs --sha or --branch');
  return { url: repo, sha: await branchTip(repo, branch), branch };
}

// `ci-runner build`: the whole stage pipeline on one commit, on this machine; prints the report, exits by status.
export async function buildCommand(argv: string[]): Promise<number> {
  const args = parseCommand(argv, BUILD_USAGE, {
    sha: { type: 'string' },
    branch: { type: 'string' },
    json: { type: 'boolean', default: false },
    verbose: { type: 'boolean', short: 'v', default: false },
  });
  if (!args) return 0;
  const repo = args.positionals[0];
  if (!repo) throw new UsageError('give a repository URL or a local path (--help for usage)');
  const config = loadConfig({ ...userDirectories(process.env), ...process.env }, process.cwd(), []);
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
    if (progress)
      process.stderr.write(`[0.0s] preparing the runner's Python tools in ${config.cacheDir} ...\n`);
    const toolchain = await ensureToolchain(config.pythonBin, config.cacheDir, logger, {
      path: config.hostPath,
      inherited: config.buildEnv,
    });
    const sandbox = await prepareSandbox(sandboxRequest(config.sandbox, config.hostPath, toolchain), logger);
    if (progress) {
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      process.stderr.write(
        `[${seconds}s] tools ready (python ${toolchain.pythonVersion}); building ${chosen.sha}\n`,
      );
    }
    report = await runPipeline(input, {
      toolchain,
      sandbox,
      ...configuredOptions(config),
      gitCacheKey: chosen.cacheKey,
      logger,
      signal: new AbortController().signal,
      onStage: (event) => {
        if (!progress) return;
        const seconds = ((performance.now() - started) / 1000).toFixed(1);
        const state = event.outcome === undefined ? '...' : `${event.outcome}: ${event.summary}`;
        process.stderr.write(`[${seconds}s] ${event.stage} ${state}\n`);
      },
    });
  } catch (thrown) {
    report = erroredReport(input, toError(thrown), Math.round(performance.now() - started));
  } finally {
    await chosen.server?.close();
  }
  const shown = { ...report, repositoryUrl: chosen.server ? resolve(repo) : report.repositoryUrl };
  process.stdout.write(
    `${args.values.json ? JSON.stringify(shown, null, 2) : formatReport(shown, args.values.verbose === true)}\n`,
  );
  return EXIT[report.status];
}
