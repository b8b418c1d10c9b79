import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { GitCredentials, StageLimits } from './config.js';
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
  limits: StageLimits;
  artefactMaxBytes: number;
  logger: Logger;
  signal: AbortSignal;
  /** Receives every build-log line (the worker forwards them to the job log). */
  onLog?: (line: string) => void;
  /** Called when a stage starts and ends (the worker turns it into job progress). */
  onStage?: (stage: StageName, result?: StageResult<unknown>) => void;
}

// Runs the stages in order (lint and tests side by side) for one commit and turns their results into a report.
// Throws only for faults outside the commit (unreachable repository, runner fault, cancellation).
export async function runPipeline(input: BuildInput, options: PipelineOptions): Promise<BuildReport> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  await mkdir(options.workDir, { recursive: true });
  const layout = buildLayout(await mkdtemp(join(options.workDir, `${input.commitSha.slice(0, 12)}-`)));
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
  const results: BuildResults = { stages: [] };
  const stage = async <T>(name: StageName, work: () => Promise<StageResult<T>>): Promise<StageResult<T>> => {
    options.onStage?.(name);
    ctx.log(`stage ${name} started`);
    const result = await work();
    results.stages.push([name, result]);
    ctx.log(`stage ${name} ${result.outcome}: ${result.summary}`);
    options.onStage?.(name, result);
    if (result.outcome === 'canceled') {
      throw new CiError('RUNNER_FAULT', `build canceled during ${name}`, { retriable: true });
    }
    return result;
  };
  try {
    await prepareLayout(layout);
    const { limits, toolchain } = options;
    results.checkout = await stage('checkout', () =>
      checkout.run(
        {
          ...input,
          dir: layout.src,
          cacheDir: options.cacheDir,
          credentials: options.gitCredentials,
          timeoutMs: limits.checkoutMs,
        },
        ctx,
      ),
    );
    if (results.checkout.outcome !== 'passed') return assembleReport(input, results, elapsed());
    const pipCacheDir = join(options.cacheDir, 'pip');
    results.install = await stage('install', () =>
      install.run({ layout, toolchain, pipCacheDir, timeoutMs: limits.installMs }, ctx),
    );
    if (results.install.outcome === 'passed') {
      const [lintResult, testResult] = await Promise.all([
        stage('lint', () => lint.run({ layout, toolchain, timeoutMs: limits.lintMs }, ctx)),
        stage('test', () =>
          test.run({ layout, toolchain, mark: options.pytestMark, timeoutMs: limits.testMs }, ctx),
        ),
      ]);
      results.lint = lintResult;
      results.test = testResult;
      if (testResult.outcome === 'passed' || testResult.outcome === 'failed') {
        results.coverage = await stage('coverage', () =>
          coverage.run({ layout, timeoutMs: limits.lintMs }, ctx),
        );
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
