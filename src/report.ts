import type { BuildReport, BuildStatus, StageReport } from './contracts.js';
import { BuildFault } from './errors.js';
import { redactUrl } from './logger.js';
import type { StageName, StageResult } from './stages/types.js';

/** What a build was asked to do. */
export interface BuildInput {
  taskId: string;
  commitSha: string;
  branchName: string;
  repositoryUrl: string;
  attempt: number;
}

/** The stage results of one build, as far as it got. */
export interface BuildResults {
  checkout?: StageResult<unknown>;
  settings?: StageResult<unknown>;
  install?: StageResult<unknown>;
  lint?: StageResult<{ findings: string[] }>;
  test?: StageResult<{ failedTests: string[]; testsRun: number }>;
  coverage?: StageResult<{ lineCoverage: number }>;
  artefact?: StageResult<{ path: string; sha256: string }>;
  stages: Array<[StageName, StageResult<unknown>]>;
  /** The sandbox's description of itself. */
  sandbox?: string;
  /** The interpreter the build ran on. */
  pythonVersion?: string;
}

function base(input: BuildInput, status: BuildStatus): BuildReport {
  return {
    commitSha: input.commitSha,
    status,
    failedTests: [],
    lintErrors: [],
    lineCoverage: 0,
    artefactUrl: '',
    taskId: input.taskId,
    branchName: input.branchName,
    repositoryUrl: redactUrl(input.repositoryUrl),
    error: '',
    stages: [],
    artefactSha256: '',
    durationMs: 0,
    testsRun: 0,
    attempt: input.attempt,
    sandbox: '',
    pythonVersion: '',
    republished: false,
  };
}

function stageReports(results: BuildResults): StageReport[] {
  return results.stages.map(([name, result]) => ({
    name,
    outcome: result.outcome,
    durationMs: result.durationMs,
    summary: result.summary,
  }));
}

function isBad(result: StageResult<unknown> | undefined): boolean {
  return result !== undefined && result.outcome !== 'passed';
}

// Decides PASSED or FAILED from what the tools said: lint clean and tests passed, nothing else counts as green.
export function assembleReport(input: BuildInput, results: BuildResults, durationMs: number): BuildReport {
  const { checkout, settings, install, lint, test, coverage, artefact } = results;
  const failed =
    isBad(checkout) ||
    isBad(settings) ||
    isBad(install) ||
    isBad(lint) ||
    isBad(test) ||
    isBad(artefact) ||
    !test;
  const report = base(input, failed ? 'FAILED' : 'PASSED');
  report.stages = stageReports(results);
  report.durationMs = durationMs;
  report.sandbox = results.sandbox ?? '';
  report.pythonVersion = results.pythonVersion ?? '';
  if (lint?.outcome === 'passed' || lint?.outcome === 'failed') report.lintErrors = lint.value.findings;
  if (lint?.outcome === 'timedOut') report.lintErrors = [`TIMEOUT: ${lint.summary}`];
  if (test?.outcome === 'passed' || test?.outcome === 'failed') {
    report.failedTests = test.value.failedTests;
    report.testsRun = test.value.testsRun;
  }
  if (test?.outcome === 'timedOut') {
    report.failedTests = [...(test.value?.failedTests ?? []), `TIMEOUT: ${test.summary}`];
    report.testsRun = test.value?.testsRun ?? 0;
  }
  if (coverage?.outcome === 'passed') report.lineCoverage = coverage.value.lineCoverage;
  if (artefact?.outcome === 'passed') {
    report.artefactUrl = `file://${artefact.value.path}`;
    report.artefactSha256 = artefact.value.sha256;
  }
  // Every stage that did not pass, in order: "lint: 1 lint finding(s); test: 2 failed".
  const bad = results.stages.filter(([, result]) => result.outcome !== 'passed');
  report.error = bad.map(([name, result]) => `${name}: ${result.summary}`).join('; ');
  return report;
}

// The report for a build that reached no verdict for reasons outside the commit; a BuildFault names the stage it hit.
export function erroredReport(input: BuildInput, error: Error, durationMs: number): BuildReport {
  const report = base(input, 'ERRORED');
  report.error = error instanceof BuildFault ? `${error.stage}: ${error.message}` : error.message;
  if (error instanceof BuildFault) report.stages = error.stages;
  report.durationMs = durationMs;
  return report;
}

// The stage reports of a build as far as it got, ending with the stage a fault stopped (outcome "errored").
export function faultedStages(results: BuildResults, stage: string, error: Error, durationMs: number) {
  const finished = stageReports(results);
  if (finished.at(-1)?.name === stage) return finished;
  return [...finished, { name: stage, outcome: 'errored', durationMs, summary: error.message }];
}
