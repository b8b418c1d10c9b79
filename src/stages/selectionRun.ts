import { dirname, join } from 'node:path';
import { readBuildJson } from '../pipeline/readBuildFile.js';
import { AFFECTED_FILES } from '../pipeline/toolchain.js';
import type { TestInput, TestValue } from './test.js';
import { reportText } from './testFailures.js';
import { BASE_FAILED, BASE_LINES, type TestSelection } from './testSelection.js';
import type { StageContext } from './types.js';

/** What ci_runner_affected.py says of the selection it made. */
interface SelectionResults {
  /** Why the run could not select (every test ran, nothing was recorded). */
  unsupported?: string;
  total: number;
  selected: number;
  /** Deselected tests whose coverage came from the earlier build's record; `missing` had none. */
  carried: number;
  missing: number;
  /** Test files none of whose tests was selected, left uncollected (their import-time coverage carried). */
  uncollected_files?: number;
  /** Test functions of collected, unchanged files none of whose tests was selected: no items made. */
  unmade_functions?: number;
  /** A file whose code that runs at import changed: then every test ran. */
  import_time_change?: string | null;
  /** Failures of the earlier build reported again without running (the results name them failed). */
  carried_failures?: unknown[];
  /** Why the earlier build's record could not be used (then every test ran). */
  unusable_base?: string | null;
}

// How a run with `select = "affected"` starts: pytest-testmon (the runner's pin, on the path of this run only) and the
// runner's companion plugin, deselecting (affected) or only recording (full); one process, in pytest's order.
export function selectionRun(input: TestInput, ctx: StageContext, selection: TestSelection) {
  const { inside } = input.layout;
  const dir = inside.affected;
  const files = AFFECTED_FILES.map((name) => join(input.toolchain.pluginDir, name));
  const companion = files[0] as string;
  const testmon = ctx.sandbox.tool(input.toolchain.testmonDir);
  const runnerFiles = dirname(ctx.sandbox.runnerFile(companion));
  const affected = selection.mode === 'affected';
  ctx.log(
    affected
      ? `running only the tests this change can affect (pytest-testmon), ${selection.reason}`
      : `running every test and recording which code each executes (pytest-testmon): ${selection.reason}`,
  );
  if (input.workers > 1)
    ctx.log('test-workers is not used with select = "affected": the tests run in one process');
  return {
    args: ['-p', 'ci_runner_affected', affected ? '--testmon-forceselect' : '--testmon-noselect'],
    env: {
      PYTHONPATH: `${testmon}:${runnerFiles}`,
      TESTMON_DATAFILE: join(dir, '.testmondata'),
      CI_RUNNER_AFFECTED_OUT: dir,
      ...(affected
        ? {
            CI_RUNNER_AFFECTED_BASE: join(dir, BASE_LINES),
            CI_RUNNER_AFFECTED_BASE_FAILED: join(dir, BASE_FAILED),
          }
        : {}),
      // The runner's own files on that path are not the project's code.
      CI_RUNNER_COVERAGE_OMIT: `${testmon}/*,${runnerFiles}/*`,
    },
    files,
  };
}

// Reads how many tests the selection ran of how many, into the value and the build log; returns the failures it
// carried from the earlier build (failed there, not run here), those the results name.
export async function readSelection(
  input: TestInput,
  ctx: StageContext,
  value: TestValue,
): Promise<Set<string>> {
  const selection = await readBuildJson<SelectionResults>(input.layout.affected, 'selection.json');
  if (typeof selection?.unsupported === 'string') {
    ctx.log(
      `every test ran: select = "affected" is not possible here: ${selection.unsupported.slice(0, 200)}`,
    );
    return new Set();
  }
  if (!selection || !Number.isInteger(selection.total) || !Number.isInteger(selection.selected)) {
    ctx.log('the test selection left no account of itself: counted as a full run');
    return new Set();
  }
  value.testsSelected = selection.selected;
  value.testsTotal = selection.total;
  // Counts the build's run wrote: whole numbers or nothing, never text into the log.
  const count = (value: unknown) => (Number.isInteger(value) ? (value as number) : 0);
  const missing = count(selection.missing)
    ? `; ${count(selection.missing)} deselected test(s) had no recorded coverage`
    : '';
  const uncollected = count(selection.uncollected_files)
    ? `; ${count(selection.uncollected_files)} test file(s) not collected (their imports unchanged)`
    : '';
  const unmade = count(selection.unmade_functions)
    ? `; ${count(selection.unmade_functions)} test function(s) made no items (none of their tests affected)`
    : '';
  const changed =
    typeof selection.import_time_change === 'string'
      ? `; every test file collected and run: code that ran as conftests loaded changed in ${selection.import_time_change.slice(0, 200)}`
      : '';
  const unusable =
    typeof selection.unusable_base === 'string'
      ? `; every test ran: the earlier build's record could not be used (${reportText(selection.unusable_base, 200)})`
      : '';
  ctx.log(
    `tests selected: ${selection.selected} of ${selection.total}${missing}${uncollected}${unmade}${changed}${unusable}`,
  );
  const named = new Set(value.failedTests);
  const carried = new Set(
    (Array.isArray(selection.carried_failures) ? selection.carried_failures : []).filter(
      (id): id is string => typeof id === 'string' && named.has(id),
    ),
  );
  if (carried.size > 0) {
    ctx.log(
      `${carried.size} failed test(s) not run, their failures carried from ${input.selection?.base}: each failed the same way in the last two builds that ran it, and neither its code nor its frames changed since`,
    );
  }
  return carried;
}
