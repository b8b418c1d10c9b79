import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { collectKeptFiles } from './collectKeptFiles.js';
import type { BuildResources, Config, GitCredentials, StageLimits } from './config.js';
import type { BuildReport } from './contracts.js';
import { BuildFault, CiError, toError } from './errors.js';
import { type Logger, redactUrl } from './logger.js';
import { readBuildFile } from './readBuildFile.js';
import { assembleReport, type BuildInput, type BuildResults, faultedStages } from './report.js';
import { openBuildSandbox } from './sandbox/buildSandbox.js';
import type { NoSandbox, SandboxHost } from './sandbox/sandboxHost.js';
import * as artefact from './stages/artefact.js';
import * as checkout from './stages/checkout.js';
import * as coverage from './stages/coverage.js';
import * as install from './stages/install.js';
import { buildLayout, prepareLayout } from './stages/layout.js';
import * as lint from './stages/lint.js';
import { copyLintTree } from './stages/lintTree.js';
import * as settings from './stages/settings.js';
import * as test from './stages/test.js';
import type { Toolchain } from './stages/toolchain.js';
import type { StageContext, StageName, StageResult } from './stages/types.js';

export interface PipelineOptions {
  toolchain: Toolchain;
  /** The host's sandbox (prepareSandbox), or SANDBOX=off. */
  sandbox: SandboxHost | NoSandbox;
  /** Per-build resource limits (the repository may lower them). */
  resources: BuildResources;
  artefactDir: string;
  cacheDir: string;
  workDir: string;
  pytestMark: string;
  gitCredentials?: GitCredentials;
  /** Names the repository's git object cache instead of its URL (a local path served on a random port). */
  gitCacheKey?: string;
  /** Host variables builds inherit (Config.buildEnv). */
  buildEnv?: Readonly<Record<string, string>>;
  limits: StageLimits;
  artefactMaxBytes: number;
  logger: Logger;
  signal: AbortSignal;
  /** Receives every build-log line and each stage's output tail (the worker forwards them to the job log). */
  onLog?: (line: string) => void;
  /** Called when a stage starts and ends (the worker turns it into job progress). */
  onStage?: (stage: StageName, result?: StageResult<unknown>) => void;
}

const JOB_LOG_TAIL_BYTES = 64 * 1024;

/** The part of the pipeline options that comes from configuration. */
export type ConfiguredOptions = Pick<
  PipelineOptions,
  | 'artefactDir'
  | 'cacheDir'
  | 'workDir'
  | 'pytestMark'
  | 'gitCredentials'
  | 'buildEnv'
  | 'limits'
  | 'artefactMaxBytes'
  | 'resources'
>;

// The pipeline options every runner of builds (worker, CLI) takes from the configuration.
export function configuredOptions(config: Readonly<Config>): ConfiguredOptions {
  return {
    artefactDir: config.artefactDir,
    cacheDir: config.cacheDir,
    workDir: config.workDir,
    pytestMark: config.pytestMark,
    gitCredentials: config.gitCredentials,
    buildEnv: config.buildEnv,
    limits: config.limits,
    artefactMaxBytes: config.artefactMaxBytes,
    resources: config.sandbox.resources,
  };
}

/** Reports the build's tools write (in its out/ directory), copied into the artefact's reports/. */
const TOOL_REPORTS = ['junit.xml', 'coverage.json', 'pytest-results.json'];

// Copies the tools' reports out of the build's reach into the runner's reports, read as plain files only.
async function collectToolReports(out: string, reports: string): Promise<void> {
  for (const name of TOOL_REPORTS) {
    const bytes = await readBuildFile(join(out, name));
    if (bytes) await writeFile(join(reports, name), bytes);
  }
}

/** Where a build is: the stage running (or "prepare" before the first), since when, and the results so far. */
interface Progress {
  stage: string;
  startedAt: number;
  results?: BuildResults;
}

// Runs the stages in order (lint and tests side by side) for one commit and turns their results into a report.
// Throws only for faults outside the commit (unreachable repository, runner fault, cancellation), as a BuildFault
// naming the stage it hit and carrying the stages finished before it.
export async function runPipeline(input: BuildInput, options: PipelineOptions): Promise<BuildReport> {
  const progress: Progress = { stage: 'prepare', startedAt: performance.now() };
  try {
    return await runStages(input, options, progress);
  } catch (thrown) {
    const error = toError(thrown);
    const durationMs = Math.round(performance.now() - progress.startedAt);
    const stages = faultedStages(progress.results ?? { stages: [] }, progress.stage, error, durationMs);
    throw new BuildFault(progress.stage, stages, error);
  }
}

async function runStages(
  input: BuildInput,
  options: PipelineOptions,
  progress: Progress,
): Promise<BuildReport> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  await mkdir(options.workDir, { recursive: true });
  const buildDir = await mkdtemp(join(options.workDir, `${input.commitSha.slice(0, 12)}-`));
  const layout = buildLayout(buildDir, options.buildEnv, options.sandbox.enabled);
  const sandbox = await prepareLayout(layout)
    .then(() => openBuildSandbox(options.sandbox, layout, options.resources))
    .catch(async (error: unknown) => {
      await rm(layout.root, { recursive: true, force: true });
      throw error;
    });
  const lines: string[] = [];
  const ctx: StageContext = {
    logger: options.logger,
    signal: options.signal,
    buildDir: layout.root,
    log: (line) => {
      lines.push(`${new Date().toISOString()} ${line}`);
      options.onLog?.(line);
    },
    sandbox,
  };
  const forwardOutput = async (name: StageName) => {
    const text = await readFile(join(layout.reports, `${name}.log`)).catch(() => undefined);
    if (!text?.length) return;
    const kept = text.subarray(Math.max(0, text.length - JOB_LOG_TAIL_BYTES)).toString('utf8');
    options.onLog?.(`--- ${name} output${kept.length < text.length ? ' (tail)' : ''} ---\n${kept}`);
  };
  const results: BuildResults = {
    stages: [],
    sandbox: sandbox.description(),
    pythonVersion: options.toolchain.pythonVersion,
  };
  progress.results = results;
  const stage = async <T>(name: StageName, work: () => Promise<StageResult<T>>): Promise<StageResult<T>> => {
    Object.assign(progress, { stage: name, startedAt: performance.now() });
    options.onStage?.(name);
    ctx.log(`stage ${name} started`);
    const finished = await work();
    // What the kernel enforced during the stage is part of its result ("memory limit … reached").
    const enforced = await sandbox.limitEvents();
    const result = enforced.length
      ? { ...finished, summary: `${finished.summary}; ${enforced.join('; ')}` }
      : finished;
    results.stages.push([name, result]);
    ctx.log(`stage ${name} ${result.outcome}: ${result.summary}`);
    await forwardOutput(name);
    options.onStage?.(name, result);
    if (result.outcome === 'canceled') {
      throw new CiError('RUNNER_FAULT', `build canceled during ${name}`, { retriable: true });
    }
    return result;
  };
  try {
    ctx.log(`sandbox: ${sandbox.description()}`);
    ctx.log(`python ${options.toolchain.pythonVersion} (${options.toolchain.basePython})`);
    // Names the process that owns this build, so a later worker can clean up if this one is killed.
    await writeFile(join(layout.root, 'owner'), `${hostname()} ${process.pid}\n`);
    const { toolchain } = options;
    // A local path served on a random port is the same repository every time: its caches are keyed by its path.
    const repository = options.gitCacheKey ?? redactUrl(input.repositoryUrl);
    const checkedOut = await stage('checkout', () =>
      checkout.run(
        {
          ...input,
          dir: layout.src,
          cacheDir: options.cacheDir,
          cacheKey: options.gitCacheKey,
          credentials: options.gitCredentials,
          timeoutMs: options.limits.checkoutMs,
        },
        ctx,
      ),
    );
    results.checkout = checkedOut;
    if (checkedOut.outcome !== 'passed') return assembleReport(input, results, elapsed());
    const { source } = checkedOut.value;
    // Lint reads its own copy, taken before any process of the build ran.
    await copyLintTree(layout.src, layout.lintTree);
    await sandbox.handOver([layout.src, layout.out, layout.home, layout.tmp]);
    const defaults = {
      pytestMark: options.pytestMark,
      pytestArgs: [],
      lint: true,
      testWorkers: 1,
      limits: options.limits,
      resources: options.resources,
    };
    const repo = await stage('settings', () =>
      settings.run({ layout, toolchain, defaults, cacheDir: options.cacheDir }, ctx),
    );
    results.settings = repo;
    if (repo.outcome === 'passed') {
      const { limits, resources } = repo.value.settings;
      await sandbox.lower(resources);
      results.sandbox = sandbox.description();
      const installed = await stage('install', () =>
        install.run(
          {
            layout,
            repository,
            toolchain,
            cacheDir: options.cacheDir,
            timeoutMs: limits.installMs,
            extras: repo.value.extras,
            groups: repo.value.groups,
            installable: repo.value.installable,
            buildRequires: repo.value.buildRequires,
          },
          ctx,
        ),
      );
      results.install = installed;
      if (installed.outcome === 'passed') {
        const { sharedEnv, venvDir } = installed.value;
        const testInput = {
          layout,
          toolchain,
          mark: repo.value.settings.pytestMark,
          extraArgs: repo.value.settings.pytestArgs,
          workers: repo.value.settings.testWorkers,
          timeoutMs: limits.testMs,
          sharedEnv,
          venvDir,
        };
        const [lintResult, testResult] = await Promise.all([
          repo.value.settings.lint
            ? stage('lint', () =>
                lint.run(
                  { layout, toolchain, timeoutMs: limits.lintMs, repository, cacheDir: options.cacheDir },
                  ctx,
                ),
              )
            : undefined,
          stage('test', () => test.run(testInput, ctx)),
        ]);
        results.lint = lintResult;
        results.test = testResult;
        if (testResult.outcome === 'passed' || testResult.outcome === 'failed') {
          results.coverage = await stage('coverage', () => coverage.run({ layout }, ctx));
        }
      }
    }
    Object.assign(progress, { stage: 'artefact', startedAt: performance.now() });
    await collectToolReports(layout.out, layout.reports);
    const outputs = join(layout.root, 'outputs');
    const kept = await collectKeptFiles(layout.keep, outputs);
    if (kept > 0)
      ctx.log(`kept ${kept} file(s) the build wrote to $CI_RUNNER_KEEP (the artefact's outputs/)`);
    await writeFile(join(layout.reports, 'build.log'), `${lines.join('\n')}\n`);
    results.artefact = await stage('artefact', () =>
      artefact.run(
        {
          trees: [
            // The tree at that commit, from the object store: not what the install or the tests wrote into it.
            ...(source ? [{ ...source, prefix: 'source' }] : []),
            { dir: layout.reports, prefix: 'reports' },
            ...(kept > 0 ? [{ dir: outputs, prefix: 'outputs' }] : []),
          ],
          artefactDir: options.artefactDir,
          name: input.commitSha,
          maxBytes: options.artefactMaxBytes,
        },
        ctx,
      ),
    );
    return assembleReport(input, results, elapsed());
  } finally {
    await sandbox.close();
    await rm(layout.root, { recursive: true, force: true });
  }
}
