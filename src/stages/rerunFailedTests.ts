import { join } from 'node:path';
import { readBuildJson } from '../pipeline/readBuildFile.js';
import { type PytestPlace, runPytest } from './runPytest.js';
import type { StageContext } from './types.js';

/** More failures than this are not flakes worth re-running: the build is broken, and re-runs would only cost time. */
export const MAX_RERUN_IDS = 50;

/** What the re-runs need of the test stage's input. */
export interface RerunInput extends PytestPlace {
  extraArgs: string[];
  flakyReruns: number;
}

interface RerunResults {
  failed?: string[];
  passed_ids?: string[];
}

/** What the re-runs found: the tests that passed on one (flaky), and those that failed every time. */
export interface Reruns {
  flaky: string[];
  failed: string[];
}

// A test's node id (`path::name[param]`), not a collection error (a path alone) or a message the runner wrote.
const isTestId = (id: string) => id.includes('::') && !id.startsWith('pytest exited ');

// Runs the failed tests again, by node id, in the same environment and sandbox (pytest alone, no coverage: the
// build's coverage is its first run's), up to `flakyReruns` times while some still fail and time is left. A test
// that passes on a re-run is flaky; its verdict comes from the runner's plugin (the tests pytest reported passed),
// never from JUnit. Collection errors are never re-run, and neither is a run with more than MAX_RERUN_IDS failures.
export async function rerunFailedTests(
  input: RerunInput,
  ctx: StageContext,
  failed: string[],
  timeLeftMs: () => number,
  /** Failures of the build not to re-run (carried from an earlier build) that count toward the limit all the same. */
  besides = 0,
): Promise<Reruns> {
  const { layout } = input;
  const { inside } = layout;
  let pending = failed.filter(isTestId);
  const kept = failed.filter((id) => !isTestId(id));
  if (input.flakyReruns === 0 || pending.length === 0) return { flaky: [], failed };
  if (pending.length + besides > MAX_RERUN_IDS) {
    ctx.log(`${pending.length + besides} tests failed (more than ${MAX_RERUN_IDS}): none is re-run`);
    return { flaky: [], failed };
  }
  const flaky: string[] = [];
  for (let round = 1; round <= input.flakyReruns && pending.length > 0; round += 1) {
    const timeoutMs = timeLeftMs();
    if (timeoutMs <= 0) {
      ctx.log(`no time left for re-run ${round} of ${pending.length} failed test(s)`);
      break;
    }
    ctx.log(`re-run ${round} of ${input.flakyReruns}: ${pending.length} failed test(s)`);
    const results = join(inside.out, `pytest-rerun-${round}.json`);
    const args = [
      '-m',
      'pytest',
      '-p',
      'ci_runner_pytest_plugin',
      '-o',
      `cache_dir=${join(inside.tmp, 'pytest-cache')}`,
    ];
    const env = { CI_RUNNER_PYTEST_RESULTS: results, CI_RUNNER_PYTEST_PASSED_IDS: '1' };
    const result = await runPytest(
      input,
      ctx,
      [...args, '-q', ...input.extraArgs, '--', ...pending],
      env,
      timeoutMs,
    );
    if (result.kind !== 'exited') {
      ctx.log(`re-run ${round} ended without a verdict (${result.kind})`);
      break;
    }
    const verdicts = await readBuildJson<RerunResults>(layout.out, `pytest-rerun-${round}.json`);
    const passed = new Set(Array.isArray(verdicts?.passed_ids) ? verdicts.passed_ids : []);
    const now = pending.filter((id) => passed.has(id));
    for (const id of now) ctx.log(`flaky: ${id} failed, then passed on re-run ${round}`);
    flaky.push(...now);
    pending = pending.filter((id) => !passed.has(id));
  }
  return { flaky, failed: [...kept, ...pending] };
}
