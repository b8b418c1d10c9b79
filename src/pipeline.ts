import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Config, GitCredentials, StageLimits } from './config.js';
import type { BuildReport } from './contracts.js';
import { CiError } from './errors.js';
import type { Logger } from './logger.js';
import { assembleReport, type BuildInput, type BuildResults } from './report.js';
import * as artefact from './stages/artefact.js';
import * as checkout from './stages/checkout.js';
import * as coverage from './stages/coverage.js';
import * as install from './stages/install.js';
import { buildLayout, prepareLayout } from './stages/layout.js';
import * as lint from './stages/lint.js';
import * as settings from './stages/settings.js';
import * as test from './stages/test.js';
import type { Toolchain } from './stages/toolchain.js';
import type { StageContext, StageName, StageResult } from './stages/types.js';

export interface PipelineOptions {
  toolchain: Toolchain;
  artefactDir: string;
  cacheDir: string;
  workDir: string;
  pytestMark: string;
  gitCredentials?: GitCredentials;
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
  };
}

// Runs the stages in order (lint and tests side by side) for one commit and turns their results into a report.
// Throws only for faults outside the commit (unreachable repository, runner fault, cancellation).
export async function runPipeline(input: BuildInput, options: PipelineOptions): Promise<BuildReport> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  await mkdir(options.workDir, { recursive: true });
  const buildDir = await mkdtemp(join(options.workDir, `${input.commitSha.slice(0, 12)}-`));
  const layout = buildLayout(buildDir, options.buildEnv);
  const lines: string[] = [];
  const ctx: StageContext = {
    logger: options.logger,
    signal: options.signal,
    buildDir: layout.root,
    log: (line) => {
      lines.push(`${new Date().toISOString()} ${line}`);
      options.onLog?.(line);
    },
  };
  const forwardOutput = async (name: StageName) => {
    const text = await readFile(join(layout.reports, `${name}.log`)).catch(() => undefined);
    if (!text?.length) return;
    const kept = text.subarray(Math.max(0, text.length - JOB_LOG_TAIL_BYTES)).toString('utf8');
    options.onLog?.(`--- ${name} output${kept.length < text.length ? ' (tail)' : ''} ---\n${kept}`);
  };
  const results: BuildResults = { stages: [] };
  const stage = async <T>(name: StageName, work: () => Promise<StageResult<T>>): Promise<StageResult<T>> => {
    options.onStage?.(name);
    ctx.log(`stage ${name} started`);
    const result = await work();
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
    await prepareLayout(layout);
    // Names the process that owns this build, so a later worker can clean up if this one is killed.
    await writeFile(join(layout.root, 'owner'), `${hostname()} ${process.pid}\n`);
    const { toolchain } = options;
    results.checkout = await stage('checkout', () =>
      checkout.run(
        {
          ...input,
          dir: layout.src,
          cacheDir: options.cacheDir,
          credentials: options.gitCredentials,
          timeoutMs: options.limits.checkoutMs,
        },
        ctx,
      ),
    );
    if (results.checkout.outcome !== 'passed') return assembleReport(input, results, elapsed());
    const defaults = { pytestMark: options.pytestMark, pytestArgs: [], lint: true, limits: options.limits };
    const repo = await stage('settings', () => settings.run({ layout, toolchain, defaults }, ctx));
    results.settings = repo;
    if (repo.outcome === 'passed') {
      const { limits } = repo.value.settings;
      const installInput = { layout, toolchain, cacheDir: options.cacheDir, timeoutMs: limits.installMs };
      results.install = await stage('install', () =>
        install.run({ ...installInput, extras: repo.value.extras, installable: repo.value.installable }, ctx),
      );
      if (results.install.outcome === 'passed') {
        const testInput = {
          layout,
          toolchain,
          mark: repo.value.settings.pytestMark,
          extraArgs: repo.value.settings.pytestArgs,
          timeoutMs: limits.testMs,
        };
        const [lintResult, testResult] = await Promise.all([
          repo.value.settings.lint
            ? stage('lint', () => lint.run({ layout, toolchain, timeoutMs: limits.lintMs }, ctx))
            : undefined,
          stage('test', () => test.run(testInput, ctx)),
        ]);
        results.lint = lintResult;
        results.test = testResult;
        if (testResult.outcome === 'passed' || testResult.outcome === 'failed') {
          results.coverage = await stage('coverage', () =>
            coverage.run({ layout, timeoutMs: limits.lintMs }, ctx),
          );
        }
      }
    }
    await writeFile(join(layout.reports, 'build.log'), `${lines.join('\n')}\n`);
    results.artefact = await stage('artefact', () =>
      artefact.run(
        {
          trees: [
            { dir: layout.src, prefix: 'source' },
            { dir: layout.reports, prefix: 'reports' },
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
    await rm(layout.root, { recursive: true, force: true });
  }
}
