import type { BuildReport, BuildStatus, StageReport } from '../delivery/contracts.js';
import { BuildFault } from '../ops/errors.js';
import { redactUrl } from '../ops/logger.js';
import type { StageName, StageResult } from '../stages/types.js';
import type { BuildInput } from './buildInput.js';
import type { StageResults } from './stageDefinition.js';
import { STAGE_ORDER, STAGES } from './stageTable.js';

/** The stage results of one build, as far as it got. */
export interface BuildResults {
  stages: StageResults;
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
    flakyTests: [],
    supersededBy: '',
    testsSelected: 0,
    testsTotal: 0,
    artefactLink: '',
    workerHost: '',
    warm: false,
    failedTestsOmitted: 0,
    lintErrorsOmitted: 0,
    failures: [],
    lintFindings: [],
    failuresTruncated: 0,
  };
}

// The stages that finished, in the stage table's order (lint before test, whichever finished first), each with its
// result: a report does not depend on timing.
function finished(results: BuildResults): Array<[StageName, StageResult<unknown>]> {
  return STAGE_ORDER.flat().flatMap((name) => {
    const result = results.stages[name];
    return result ? [[name, result] as [StageName, StageResult<unknown>]] : [];
  });
}

function stageReports(results: BuildResults): StageReport[] {
  return finished(results).map(([name, result]) => ({
    name,
    outcome: result.outcome,
    durationMs: result.durationMs,
    summary: result.summary,
  }));
}

// What one stage's result adds to the report, through its entry in the stage table.
function contribute<N extends StageName>(name: N, results: StageResults, report: BuildReport): void {
  const result = results[name];
  if (result) STAGES[name].report?.(result, report);
}

function isBad(result: StageResult<unknown> | undefined): boolean {
  return result !== undefined && result.outcome !== 'passed';
}

// Decides PASSED or FAILED from what the tools said: lint clean and tests passed, nothing else counts as green.
export function assembleReport(input: BuildInput, results: BuildResults, durationMs: number): BuildReport {
  const { checkout, settings, install, lint, test, artefact } = results.stages;
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
  for (const name of STAGE_ORDER.flat()) contribute(name, results.stages, report);
  // Every stage that did not pass, in order: "lint: 1 lint finding(s); test: 2 failed".
  const bad = finished(results).filter(([, result]) => result.outcome !== 'passed');
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

// The report for a build canceled, or never run, because a newer commit of its branch was announced.
export function supersededReport(input: BuildInput, newerSha: string, durationMs: number): BuildReport {
  const report = base(input, 'ERRORED');
  report.error = `superseded by ${newerSha}`;
  report.supersededBy = newerSha;
  report.durationMs = durationMs;
  return report;
}

// The stage reports of a build as far as it got, ending with the stage a fault stopped (outcome "errored").
export function faultedStages(results: BuildResults, stage: string, error: Error, durationMs: number) {
  const finished = stageReports(results);
  if (finished.at(-1)?.name === stage) return finished;
  return [...finished, { name: stage, outcome: 'errored', durationMs, summary: error.message }];
}
