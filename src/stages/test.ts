import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CiError } from '../errors.js';
import { runBounded } from '../process.js';
import { type BuildLayout, buildEnv } from './layout.js';
import type { Toolchain } from './toolchain.js';
import type { StageContext, StageResult } from './types.js';

export interface TestInput {
  layout: BuildLayout;
  toolchain: Toolchain;
  mark: string;
  /** The repository's own extra pytest arguments (already validated). */
  extraArgs: string[];
  timeoutMs: number;
}

export interface TestValue {
  failedTests: string[];
  testsRun: number;
  exitCode: number;
}

interface PluginResults {
  exit_status: number;
  ran: number;
  failed: string[];
}

const NO_TESTS_COLLECTED = 5;

// Runs `pytest -m <mark>` under coverage; failed ids come from pytest itself (our plugin), never from its text.
export async function run(input: TestInput, ctx: StageContext): Promise<StageResult<TestValue>> {
  const { layout } = input;
  const resultsFile = join(layout.reports, 'pytest-results.json');
  const python = join(layout.venv, 'bin', 'python');
  const args = [
    '-m',
    'coverage',
    'run',
    `--data-file=${join(layout.reports, '.coverage')}`,
    '-m',
    'pytest',
    '-m',
    input.mark,
    `--junitxml=${join(layout.reports, 'junit.xml')}`,
    '-p',
    'ci_runner_pytest_plugin',
    '-o',
    `cache_dir=${join(layout.tmp, 'pytest-cache')}`,
    '-q',
    ...input.extraArgs,
  ];
  ctx.log(`running pytest -m "${input.mark}" under coverage`);
  const result = await runBounded(python, args, {
    cwd: layout.src,
    env: buildEnv(layout, { CI_RUNNER_PYTEST_RESULTS: resultsFile }),
    timeoutMs: input.timeoutMs,
    signal: ctx.signal,
    logFile: join(layout.reports, 'test.log'),
  });
  const durationMs = result.durationMs;
  if (result.kind === 'canceled') return { outcome: 'canceled', durationMs, summary: 'canceled' };
  if (result.kind === 'timedOut') {
    return {
      outcome: 'timedOut',
      durationMs,
      summary: `tests exceeded their time limit of ${input.timeoutMs} ms`,
    };
  }
  if (result.kind === 'notStarted') {
    throw new CiError('RUNNER_FAULT', `pytest could not start: ${result.message}`, { retriable: true });
  }
  const plugin = await readFile(resultsFile, 'utf8').then(
    (text) => JSON.parse(text) as PluginResults,
    () => undefined,
  );
  const value: TestValue = {
    failedTests: plugin?.failed ?? [],
    testsRun: plugin?.ran ?? 0,
    exitCode: result.exitCode,
  };
  if (result.exitCode === 0 || result.exitCode === NO_TESTS_COLLECTED) {
    const summary = value.testsRun === 0 ? 'no tests ran' : `${value.testsRun} test(s) passed`;
    return { outcome: 'passed', durationMs, summary, value };
  }
  if (value.failedTests.length === 0) {
    value.failedTests.push(
      `pytest exited ${result.exitCode}: ${result.stderr.trim().split('\n').slice(-1)[0] ?? ''}`,
    );
  }
  return { outcome: 'failed', durationMs, summary: `${value.failedTests.length} test(s) failed`, value };
}
