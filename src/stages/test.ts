import { join } from 'node:path';
import type { TestFailure } from '../delivery/contracts.js';
import { exitReason } from '../host/runBounded.js';
import { CiError } from '../ops/errors.js';
import type { BuildLayout } from '../pipeline/layout.js';
import { readBuildFile } from '../pipeline/readBuildFile.js';
import type { Toolchain } from '../pipeline/toolchain.js';
import { COVERAGE_CACHE_OUT } from './coverageCache.js';
import { readPluginResults } from './pluginResults.js';
import { rerunFailedTests } from './rerunFailedTests.js';
import { runPytest } from './runPytest.js';
import { readSelection, selectionRun } from './selectionRun.js';
import { failureOf, hangStack, readFailureDetails, reportText } from './testFailures.js';
import type { TestSelection } from './testSelection.js';
import type { StageContext, StageResult } from './types.js';

export interface TestInput {
  layout: BuildLayout;
  toolchain: Toolchain;
  mark: string;
  /** The repository's own extra pytest arguments (already validated). */
  extraArgs: string[];
  /** pytest-xdist workers ([tool.ci-runner] test-workers); 1 runs the tests in one process. */
  workers: number;
  /** Re-runs of the failed tests (0: none): one that passes on a re-run is flaky, not failed. */
  flakyReruns: number;
  timeoutMs: number;
  /** The shared environment the build's venv extends (read-only). */
  sharedEnv?: string;
  /** The key's ready environment, bound read-only as the venv (instead of the build's own). */
  venvDir?: string;
  /** Set when the repository selects affected tests: whether this run does, and from what. */
  selection?: TestSelection;
  /** The repository's kept coverage analysis (a file of the runner's cache, bound read-only), if any. */
  coverageCache?: string;
}

export interface TestValue {
  failedTests: string[];
  /** Failed, then passed on a re-run: not in failedTests. */
  flakyTests: string[];
  testsRun: number;
  /** Tests the run selected, and tests a full run would have run (equal unless only affected tests ran). */
  testsSelected: number;
  testsTotal: number;
  exitCode: number;
  /** Why and where: one per failedTests entry, then one per flakyTests entry. */
  failures: TestFailure[];
}

const NO_TESTS_COLLECTED = 5;

// Runs `pytest -m <mark>` under coverage; failed ids come from pytest itself (our plugin), never from its text.
export async function run(input: TestInput, ctx: StageContext): Promise<StageResult<TestValue>> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const { layout } = input;
  const { inside } = layout;
  const args = [
    '-m',
    'coverage',
    'run',
    `--data-file=${join(inside.out, '.coverage')}`,
    '-m',
    'pytest',
    `--junitxml=${join(inside.out, 'junit.xml')}`,
    '-p',
    'ci_runner_pytest_plugin',
    '-o',
    `cache_dir=${join(inside.tmp, 'pytest-cache')}`,
    '-q',
    // Each worker measures its own coverage (the plugin), which the controller combines as it exits.
    ...(input.workers > 1 && !input.selection ? ['-n', String(input.workers)] : []),
    ...input.extraArgs,
  ];
  const parallel = input.workers > 1 && !input.selection ? `, ${input.workers} xdist workers` : '';
  const marks = input.mark ? `marks "${input.mark}" (if the repository declares them)` : 'no mark';
  ctx.log(`running pytest under coverage, ${marks} and the repository's own${parallel}`);
  // The plugin writes its results, and coverage's JSON report as the process exits (no second Python process).
  const env: Record<string, string> = {
    CI_RUNNER_PYTEST_RESULTS: join(inside.out, 'pytest-results.json'),
    CI_RUNNER_COVERAGE_DATA: join(inside.out, '.coverage'),
    CI_RUNNER_COVERAGE_JSON: join(inside.out, 'coverage.json'),
    // coverage's analysis of each file, as this run leaves it (and below, as the repository's earlier builds did).
    CI_RUNNER_COVERAGE_CACHE_OUT: join(inside.out, COVERAGE_CACHE_OUT),
    // The plugin writes every thread's stack just before the limit: where a test hung.
    CI_RUNNER_TEST_DEADLINE: String((Date.now() + input.timeoutMs) / 1000 - 2),
  };
  const files: string[] = [];
  if (input.coverageCache) {
    files.push(input.coverageCache);
    env.CI_RUNNER_COVERAGE_CACHE_IN = ctx.sandbox.runnerFile(input.coverageCache);
  }
  if (input.selection) {
    const selection = selectionRun(input, ctx, input.selection);
    args.push(...selection.args);
    Object.assign(env, selection.env);
    files.push(...selection.files);
  }
  const result = await runPytest(input, ctx, args, env, input.timeoutMs, files);
  const durationMs = result.durationMs;
  if (result.kind === 'canceled') return { outcome: 'canceled', durationMs, summary: 'canceled' };
  if (result.kind === 'timedOut') {
    // The plugin writes its results before every test: the tests that failed before the limit keep their ids.
    const partial = await readPluginResults(layout.out);
    const [ran, running] = await runningTest(layout.out);
    const limit = `the tests exceeded their time limit of ${input.timeoutMs} ms`;
    const summary = running ? `${running} was running when ${limit}` : limit;
    const testsRun = Number.isInteger(ran) ? (ran as number) : (partial?.ran ?? 0);
    const found = await readFailureDetails(layout.out);
    const hang = await hangStack(layout.out, inside.src, input.workers);
    const timeout: TestFailure = {
      nodeId: `TIMEOUT: ${summary}`,
      kind: 'timeout',
      message: running ? `${running} did not finish: ${limit}` : limit,
      location: hang?.location ?? '',
      traceback: hang?.traceback ?? '',
      output: '',
    };
    const failedTests = partial?.failed ?? [];
    const value = {
      failedTests,
      flakyTests: [],
      testsRun,
      testsSelected: testsRun,
      testsTotal: testsRun,
      exitCode: -1,
      failures: [...failedTests.map((id) => failureOf(id, found)), timeout],
    };
    return { outcome: 'timedOut', durationMs, summary, value };
  }
  if (result.kind === 'notStarted') {
    throw new CiError('PROCESS_NOT_STARTED', `pytest could not start: ${result.message}`, {
      retriable: true,
    });
  }
  const plugin = await readPluginResults(layout.out);
  const note = selectionNote(input.mark, plugin?.undeclared_marks);
  if (note) ctx.log(note);
  if (plugin?.mark_expression) ctx.log(`tests selected by -m "${plugin.mark_expression}"`);
  if (plugin?.unmade_functions)
    ctx.log(
      `${plugin.unmade_functions} test function(s) made no items: -m deselects every one they could make`,
    );
  const noted = (summary: string) => (plugin?.undeclared_marks && note ? `${summary} (${note})` : summary);
  const collected = plugin?.collected ?? plugin?.ran ?? 0;
  const found = await readFailureDetails(layout.out);
  const value: TestValue = {
    failedTests: plugin?.failed ?? [],
    flakyTests: [],
    testsRun: plugin?.ran ?? 0,
    testsSelected: collected,
    testsTotal: collected,
    exitCode: result.exitCode,
    failures: [],
  };
  // Failures carried from the earlier build were not run here: never re-run either.
  const carried = input.selection ? await readSelection(input, ctx, value) : new Set<string>();
  if (result.exitCode === 0 || result.exitCode === NO_TESTS_COLLECTED) {
    const summary = value.testsRun === 0 ? 'no tests ran' : `${value.testsRun} test(s) passed`;
    return { outcome: 'passed', durationMs, summary: noted(summary), value };
  }
  // pytest killed (a signal or a limit) is a crash whatever failed before it: most of the run may not have happened.
  if (value.failedTests.length === 0 || exitReason(result.exitCode)) {
    const [, running] = await runningTest(layout.out);
    const signal = exitReason(result.exitCode);
    const why = signal ?? result.stderr.trim().split('\n').slice(-1)[0] ?? '';
    const nodeId = `pytest exited ${result.exitCode}: ${why}`;
    value.failedTests.push(nodeId);
    found.kinds.set(nodeId, signal ? 'crashed' : 'error');
    found.details.set(nodeId, {
      kind: signal ? 'crashed' : 'error',
      message: running ? `${running} was running when pytest exited (${why})` : nodeId,
      location: '',
      traceback: '',
      output: reportText(result.stderr, 2048, true),
    });
  }
  const ran = value.failedTests.filter((id) => !carried.has(id));
  // As in a full run, a build with more failures than the limit (carried ones too) re-runs none.
  const besides = value.failedTests.length - ran.length;
  const reruns = await rerunFailedTests(input, ctx, ran, () => input.timeoutMs - elapsed(), besides);
  const stillFailed = new Set(reruns.failed);
  value.failedTests = value.failedTests.filter((id) => carried.has(id) || stillFailed.has(id));
  value.flakyTests = reruns.flaky;
  value.failures = [
    ...value.failedTests.map((id) => failureOf(id, found)),
    ...value.flakyTests.map((id) => ({ ...failureOf(id, found), kind: 'flaky' as const })),
  ];
  const flaky = value.flakyTests.length ? `; ${value.flakyTests.length} flaky (passed on a re-run)` : '';
  if (value.failedTests.length === 0) {
    const summary = `${value.testsRun - value.flakyTests.length} test(s) passed${flaky}`;
    return { outcome: 'passed', durationMs: elapsed(), summary: noted(summary), value };
  }
  const summary = `${value.failedTests.length} test(s) failed${flaky}`;
  return { outcome: 'failed', durationMs: elapsed(), summary: noted(summary), value };
}

// The plugin's marker, "<tests run so far>\t<node id of the test running>", rewritten in place as each test starts:
// how far a run that was stopped or killed got.
async function runningTest(out: string): Promise<[number | undefined, string | undefined]> {
  const marker = (await readBuildFile(out, 'pytest-results.json.running', 64 * 1024))?.toString('utf8');
  if (!marker?.includes('\t')) return [undefined, undefined];
  const running = reportText(marker.slice(marker.indexOf('\t') + 1), 4096);
  return [Number(marker.split('\t')[0]), running || undefined];
}

// What selected the tests when it was not the runner's mark: "mark `fast` is not declared by the repository: ran its
// default selection".
export function selectionNote(mark: string, undeclared: string[] | undefined): string | undefined {
  if (!mark) return `no mark of the runner's (pytest-mark = ""): ran the repository's own selection`;
  if (!undeclared?.length) return undefined;
  const names = undeclared.map((name) => `\`${name}\``).join(', ');
  const verb = undeclared.length === 1 ? 'mark ' : 'marks ';
  return `${verb}${names} ${undeclared.length === 1 ? 'is' : 'are'} not declared by the repository: ran its default selection`;
}
