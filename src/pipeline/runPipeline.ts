import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { BuildReport } from '../delivery/contracts.js';
import { writeOwner } from '../host/ownerFile.js';
import type { BuildResources, CheckoutCaps, Config, GitCredentials, StageLimits } from '../ops/config.js';
import { BuildFault, CiError, toError } from '../ops/errors.js';
import { type Logger, redactUrl } from '../ops/logger.js';
import { type BuildDisk, mountBuildDisk } from '../sandbox/buildDisk.js';
import { openBuildSandbox } from '../sandbox/buildSandbox.js';
import type { EgressRefusals } from '../sandbox/egressProxy.js';
import type { NoSandbox, SandboxHost } from '../sandbox/sandboxHost.js';
import type { StageContext, StageName, StageOutcome } from '../stages/types.js';
import type { BuildInput } from './buildInput.js';
import { type BuildLayout, buildLayout, prepareLayout } from './layout.js';
import { assembleReport, type BuildResults, faultedStages } from './report.js';
import type { BuildState, CacheUse, StageDefinition } from './stageDefinition.js';
import { STAGE_ORDER, STAGES } from './stageTable.js';
import type { Toolchain } from './toolchain.js';

/** A stage starting (no outcome yet) or finished, with the cache it used if any. */
export type StageEvent =
  | { stage: StageName; outcome?: undefined }
  | {
      stage: StageName;
      outcome: StageOutcome;
      durationMs: number;
      summary: string;
      cache?: CacheUse;
      /** Connections the build's egress proxy refused during the stage. */
      egressRefused?: number;
    };

/** Destinations named in a stage's summary; the job log has every refusal with its reason. */
const EGRESS_NAMED = 5;

// "egress refused: 203.0.113.9:6379, evil.example:443 (7 connections)": each destination once, the first few.
function egressNote(refused: EgressRefusals): string {
  const targets = [...new Set(refused.listed.map((r) => r.target))];
  const others = targets.length > EGRESS_NAMED || refused.total > refused.listed.length ? ', …' : '';
  const count = refused.total > 1 ? ` (${refused.total} connections)` : '';
  return `egress refused: ${targets.slice(0, EGRESS_NAMED).join(', ')}${others}${count}`;
}

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
  flakyReruns: number;
  selectFullEvery: number;
  selectDefault: 'all' | 'affected';
  /** Reuse the bytecode the repository's earlier builds compiled (BYTECODE_CACHE); on unless false. */
  bytecodeCache?: boolean;
  gitCredentials?: GitCredentials;
  /** Names the repository's git object cache instead of its URL (a local path served on a random port). */
  gitCacheKey?: string;
  /** Host variables builds inherit (Config.buildEnv). */
  buildEnv?: Readonly<Record<string, string>>;
  limits: StageLimits;
  artefactMaxBytes: number;
  checkoutCaps: CheckoutCaps;
  logger: Logger;
  signal: AbortSignal;
  /** Receives every build-log line and each stage's output tail (the worker forwards them to the job log). */
  onLog?: (line: string) => void;
  /** Called when a stage starts and ends (the worker turns it into job progress and metrics). */
  onStage?: (event: StageEvent) => void;
}

/** The tail of each stage's output forwarded to the job log (its whole output is in the artefact). */
const JOB_LOG_TAIL_BYTES = 8 * 1024;

/** The part of the pipeline options that comes from configuration. */
export type ConfiguredOptions = Pick<
  PipelineOptions,
  | 'artefactDir'
  | 'cacheDir'
  | 'workDir'
  | 'pytestMark'
  | 'flakyReruns'
  | 'selectFullEvery'
  | 'selectDefault'
  | 'bytecodeCache'
  | 'gitCredentials'
  | 'buildEnv'
  | 'limits'
  | 'artefactMaxBytes'
  | 'checkoutCaps'
  | 'resources'
>;

// The pipeline options every runner of builds (worker, CLI) takes from the configuration.
export function configuredOptions(config: Readonly<Config>): ConfiguredOptions {
  return {
    artefactDir: config.artefactDir,
    cacheDir: config.cacheDir,
    workDir: config.workDir,
    pytestMark: config.pytestMark,
    flakyReruns: config.flakyReruns,
    selectFullEvery: config.selectFullEvery,
    selectDefault: config.selectDefault,
    bytecodeCache: config.bytecodeCache,
    gitCredentials: config.gitCredentials,
    buildEnv: config.buildEnv,
    limits: config.limits,
    artefactMaxBytes: config.artefactMaxBytes,
    checkoutCaps: config.checkoutCaps,
    resources: config.sandbox.resources,
  };
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
    const stages = faultedStages(progress.results ?? { stages: {} }, progress.stage, error, durationMs);
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
  // A root worker gives the build a filesystem of its own: all it writes is bounded by the kernel.
  const privileged = options.sandbox.enabled && options.sandbox.privileged;
  await mkdir(layout.disk);
  const disk = privileged ? await ownDisk(layout, options.resources.diskMb) : undefined;
  const sandbox = await prepareLayout(layout)
    .then(() => openBuildSandbox(options.sandbox, layout, options.resources, disk))
    .catch(async (error: unknown) => {
      await removeBuildDir(layout.root, disk);
      throw error;
    });
  const state: BuildState = {
    input,
    layout,
    toolchain: options.toolchain,
    sandbox,
    // A local path served on a random port is the same repository every time: its caches are keyed by its path.
    repository: options.gitCacheKey ?? redactUrl(input.repositoryUrl),
    cacheDir: options.cacheDir,
    artefactDir: options.artefactDir,
    artefactMaxBytes: options.artefactMaxBytes,
    checkoutCaps: options.checkoutCaps,
    gitCacheKey: options.gitCacheKey,
    gitCredentials: options.gitCredentials,
    pytestMark: options.pytestMark,
    flakyReruns: options.flakyReruns,
    selectFullEvery: options.selectFullEvery,
    selectDefault: options.selectDefault,
    bytecodeCache: options.bytecodeCache !== false,
    resources: options.resources,
    limits: options.limits,
    results: {},
    logLines: [],
    kept: { dir: join(layout.root, 'outputs'), count: 0 },
  };
  const ctx: StageContext = {
    logger: options.logger,
    signal: options.signal,
    buildDir: layout.root,
    log: (line) => {
      state.logLines.push(`${new Date().toISOString()} ${line}`);
      options.onLog?.(line);
    },
    sandbox,
  };
  const results: BuildResults = {
    stages: state.results,
    sandbox: sandbox.description(),
    pythonVersion: options.toolchain.pythonVersion,
  };
  progress.results = results;
  try {
    ctx.log(`sandbox: ${sandbox.description()}`);
    ctx.log(`python ${options.toolchain.pythonVersion} (${options.toolchain.basePython})`);
    // Names the process that owns this build, so a later worker can clean up if this one is killed.
    await writeOwner(layout.root);
    for (const step of STAGE_ORDER) {
      // Every stage of a step ends (its processes gone) before a fault of one ends the build: the build directory is
      // removed only once nothing of the build can still write in it.
      const settled = await Promise.allSettled(
        step.map((name) => runStage(name, state, ctx, options, progress)),
      );
      const fault = settled.find((outcome) => outcome.status === 'rejected');
      if (fault) throw fault.reason;
      results.sandbox = sandbox.description();
    }
    return assembleReport(input, results, elapsed());
  } finally {
    await sandbox.close();
    await removeBuildDir(layout.root, disk);
  }
}

async function ownDisk(layout: BuildLayout, mb: number): Promise<BuildDisk> {
  try {
    return await mountBuildDisk(layout.disk, mb);
  } catch (error) {
    await rm(layout.root, { recursive: true, force: true });
    throw error;
  }
}

// Removes a build's directory: its own filesystem unmounted (its image removed) once nothing of it still runs.
async function removeBuildDir(dir: string, disk: BuildDisk | undefined): Promise<void> {
  await disk?.close();
  await rm(dir, { recursive: true, force: true });
}

// Runs one stage when the stages before it gave what it needs: its preparation, its run within its own time limit,
// what the kernel enforced meanwhile, its output forwarded to the job log. A canceled stage cancels the build.
async function runStage<N extends StageName>(
  name: N,
  state: BuildState,
  ctx: StageContext,
  options: PipelineOptions,
  progress: Progress,
): Promise<void> {
  const stage: StageDefinition<N> = STAGES[name];
  if (stage.input(state, state.limits[stage.limit]) === undefined) return;
  Object.assign(progress, { stage: name, startedAt: performance.now() });
  await stage.prepare?.(state, ctx);
  // Its input once prepared (the limits a repository's settings set, the files kept for the artefact).
  const input = stage.input(state, state.limits[stage.limit]);
  if (input === undefined) return;
  options.onStage?.({ stage: name });
  ctx.log(`stage ${name} started`);
  const finished = await stage.run(input, ctx);
  // What the kernel enforced during the stage is part of its result ("memory limit … reached").
  // A full disk is the doing of the stages whose processes write on it (install, the tests), not of lint beside them
  // or of the runner's own stages after them.
  const writesDisk = name === 'install' || name === 'test';
  const enforced = (await state.sandbox.limitEvents()).filter(
    (event) => writesDisk || !event.startsWith('disk limit'),
  );
  const refused = state.sandbox.egressRefusals();
  for (const { target, reason } of refused.listed) ctx.log(`egress refused: ${target} (${reason})`);
  if (refused.total > refused.listed.length)
    ctx.log(
      `egress refused ${refused.total - refused.listed.length} more connection(s), not listed one by one`,
    );
  const notes = [...enforced, ...(refused.total ? [egressNote(refused)] : [])];
  const noted = notes.length
    ? { ...finished, summary: `${finished.summary}; ${notes.join('; ')}` }
    : finished;
  // Writes were refused: what the stage made of it is not its verdict.
  const diskFull = enforced.some((event) => event.startsWith('disk limit'));
  const result: typeof finished =
    diskFull && noted.outcome === 'passed' ? { ...noted, outcome: 'failed' } : noted;
  Object.assign(state.results, { [name]: result });
  ctx.log(`stage ${name} ${result.outcome}: ${result.summary}`);
  await forwardOutput(state.layout.reports, name, options);
  const value = result.outcome === 'passed' || result.outcome === 'failed' ? result.value : undefined;
  const cache = value === undefined ? undefined : stage.cache?.(value);
  const { outcome, durationMs, summary } = result;
  options.onStage?.({ stage: name, outcome, durationMs, summary, cache, egressRefused: refused.total });
  if (result.outcome === 'canceled') {
    throw new CiError('BUILD_CANCELED', `build canceled during ${name}`, { retriable: true });
  }
}

// The tail of a stage's output (its log file), forwarded to the job log.
async function forwardOutput(reports: string, name: StageName, options: PipelineOptions): Promise<void> {
  const text = await readFile(join(reports, `${name}.log`)).catch(() => undefined);
  if (!text?.length) return;
  const kept = text.subarray(Math.max(0, text.length - JOB_LOG_TAIL_BYTES)).toString('utf8');
  options.onLog?.(`--- ${name} output${kept.length < text.length ? ' (tail)' : ''} ---\n${kept}`);
}
