import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { readableFailures, readableFindings } from '../../src/board/verdictFormatters.js';
import { formatReport } from '../../src/cli/formatReport.js';
import type { BuildReport, TestFailure } from '../../src/delivery/contracts.js';
import { encodeBuildReport } from '../../src/delivery/contracts.js';
import { fitReport } from '../../src/delivery/fitReport.js';
import { assembleReport } from '../../src/pipeline/report.js';
import { formatterEntry, splitDiffs } from '../../src/stages/lintFindings.js';
import { boundFailures, DETAILED_FAILURES, reportText } from '../../src/stages/testFailures.js';
import { describeInstallFailure } from '../../src/stages/uvRun.js';

const failure = (index: number, bytes = 100): TestFailure => ({
  nodeId: `tests/test_a.py::test_${index}`,
  kind: 'failed',
  message: `AssertionError: ${'m'.repeat(bytes)}`,
  location: `pkg/a.py:${index + 1}`,
  traceback: 't'.repeat(bytes),
  output: 'o'.repeat(bytes),
});

const base = (): BuildReport =>
  assembleReport(
    { taskId: 't', commitSha: 'a'.repeat(40), branchName: 'main', repositoryUrl: 'http://git/r', attempt: 1 },
    { stages: {} },
    1,
  );

describe('report details', () => {
  test('text a build printed is made safe: UTF-8, no colour or control characters, bounded', () => {
    assert.equal(reportText('a\u001b[31mred\u001b[0m\u0000b\tc\n', 100), 'ared?b\tc\n');
    assert.equal(reportText(Buffer.from([0x61, 0xff, 0x62]).toString('latin1'), 100), 'a\u00ffb');
    assert.equal(reportText('x'.repeat(10), 4), 'xxxx… (6 bytes more)');
    assert.equal(reportText('x'.repeat(10), 4, true), '(6 bytes before) …xxxx');
    assert.equal(reportText(undefined, 4), '');
  });

  test('past 50 failures, or past the budget, a failure keeps its id and kind only', () => {
    const many = Array.from({ length: 60 }, (_, i) => failure(i));
    const bounded = boundFailures(many);
    assert.equal(bounded.truncated, 10);
    assert.equal(bounded.failures[DETAILED_FAILURES - 1]?.traceback.length, 100);
    assert.deepEqual(bounded.failures[DETAILED_FAILURES], {
      nodeId: 'tests/test_a.py::test_50',
      kind: 'failed',
      message: '',
      location: '',
      traceback: '',
      output: '',
    });
    const big = boundFailures(Array.from({ length: 50 }, (_, i) => failure(i, 8000)));
    const kept = big.failures.filter((entry) => entry.message).length;
    assert.ok(kept < 50 && kept > 5, `${kept} kept in full`);
    assert.equal(big.truncated, 50 - kept);
  });

  test('a report too large for its topic drops details before entries', () => {
    const failures = Array.from({ length: 50 }, (_, i) => failure(i, 4000));
    const report = {
      ...base(),
      status: 'FAILED' as const,
      failedTests: failures.map((entry) => entry.nodeId),
      failures,
    };
    const fitted = fitReport(report, { maxEntries: 1000, maxBytes: 64 * 1024 });
    assert.ok(encodeBuildReport(fitted).length <= 64 * 1024);
    assert.equal(fitted.failedTests.length, 50, 'every failed test is still named');
    assert.equal(fitted.failures.length, 50);
    assert.ok(fitted.failures.every((entry) => entry.traceback === '' && entry.output === ''));
    assert.equal(fitted.failuresTruncated, 50);
    // Entries cut: their details go with them.
    const tight = fitReport(report, { maxEntries: 10, maxBytes: 1024 * 1024 });
    assert.deepEqual(
      tight.failures.map((entry) => entry.nodeId),
      tight.failedTests,
    );
  });

  test("a formatter's findings and diffs", () => {
    assert.deepEqual(
      formatterEntry('ruff-format', 'a.py: cannot format (Expected an expression at line 3, column 7)')
        .detail,
      {
        tool: 'ruff-format',
        path: 'a.py',
        line: 3,
        column: 7,
        code: '',
        message: 'cannot format: Expected an expression',
        fixable: false,
        diff: '',
      },
    );
    const black = [
      '--- /workspace/pkg/ugly.py\t2026-12-07 11:05:49.110748+00:00',
      '+++ /workspace/pkg/ugly.py\t2026-12-07 11:05:49.249584+00:00',
      '@@ -1 +1 @@',
      '-x=1',
      '+x = 1',
      '--- big.py\t2026-12-07',
      '+++ big.py\t2026-12-07',
      ...Array.from({ length: 1000 }, () => '-y=2'),
    ].join('\n');
    const diffs = splitDiffs(black, '/workspace');
    assert.deepEqual([...diffs.keys()], ['pkg/ugly.py'], 'a diff over 4 KiB is left out');
    assert.equal(diffs.get('pkg/ugly.py'), '--- pkg/ugly.py\n+++ pkg/ugly.py\n@@ -1 +1 @@\n-x=1\n+x = 1\n');
  });

  test('an install failure names the requirement and quotes uv', () => {
    const unresolved = describeInstallFailure(
      'error: No solution found when resolving dependencies\n  cause: Because nonexistent-pkg was not found in the package registry and you require nonexistent-pkg==1.0, we can conclude that your requirements are unsatisfiable.',
    );
    assert.match(unresolved, /^`nonexistent-pkg` could not be resolved\nerror: No solution found/);
    const built = describeInstallFailure(
      `  × Failed to build \`broken @ file:///workspace\`\n${'noise\n'.repeat(2000)}  [stderr]\n  missing libfoo\n`,
    );
    assert.match(built, /^`broken @ file:\/\/\/workspace` could not be built\nnoise\n/);
    assert.match(built, /missing libfoo$/);
    assert.ok(Buffer.byteLength(built) < 2300);
  });

  test('the CLI and the board show each failure under its id', () => {
    const report: BuildReport = {
      ...base(),
      status: 'FAILED',
      failedTests: ['tests/test_a.py::test_0'],
      failures: [failure(0, 3)],
      lintErrors: ['pkg/ugly.py: would reformat'],
      lintFindings: [formatterEntry('black', 'pkg/ugly.py: would reformat').detail],
    };
    const text = formatReport(report);
    assert.match(text, /failed {5}tests\/test_a\.py::test_0\n {13}AssertionError: mmm {2}\(pkg\/a\.py:1\)/);
    assert.doesNotMatch(text, /ttt/);
    assert.match(formatReport(report, true), /\n {13}ttt\n {13}ooo/);
    assert.deepEqual(readableFailures(report), [
      'tests/test_a.py::test_0 — failed at pkg/a.py:1: AssertionError: mmm',
    ]);
    assert.deepEqual(readableFindings(report), ['pkg/ugly.py black (fixable): would reformat']);
  });
});
