import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type BuildReport, encodeBuildReport } from '../../src/delivery/contracts.js';
import { fitReport } from '../../src/delivery/fitReport.js';

const failing = (lint: number, tests: number): BuildReport => ({
  commitSha: 'f'.repeat(40),
  status: 'FAILED',
  failedTests: Array.from({ length: tests }, (_, i) => `tests/test_many.py::test_${i}`),
  lintErrors: Array.from(
    { length: lint },
    (_, i) => `pkg/imports.py:${i + 1}:8: F401 \`os\` imported but unused`,
  ),
  lineCoverage: 87.5,
  artefactUrl: 'file:///artefacts/x.tar.gz',
  taskId: 't',
  branchName: 'main',
  repositoryUrl: 'http://example.invalid/r.git',
  error: 'lint: 25000 lint finding(s)',
  stages: [],
  artefactSha256: '',
  durationMs: 1,
  testsRun: tests,
  attempt: 1,
  sandbox: '',
  pythonVersion: '3.11',
  republished: false,
  flakyTests: [],
  supersededBy: '',
  testsSelected: tests,
  testsTotal: tests,
  artefactLink: '',
  workerHost: '',
  warm: false,
  failedTestsOmitted: 0,
  lintErrorsOmitted: 0,
  failures: [],
  lintFindings: [],
  failuresTruncated: 0,
});

test('a report keeps the first REPORT_MAX_ENTRIES of each list and counts the rest', () => {
  const fitted = fitReport(failing(25_000, 1_500), { maxEntries: 1000, maxBytes: 1_000_000 });
  assert.equal(fitted.lintErrors.length, 1000);
  assert.equal(fitted.lintErrors[0], 'pkg/imports.py:1:8: F401 `os` imported but unused');
  assert.equal(fitted.lintErrorsOmitted, 24_000);
  assert.equal(fitted.failedTests.length, 1000);
  assert.equal(fitted.failedTestsOmitted, 500);
  assert.match(
    fitted.error,
    /^lint: 25000 lint finding\(s\); 500 failed test\(s\) and 24000 lint finding\(s\) left out/,
  );
  assert.deepEqual(
    fitReport(fitted, { maxEntries: 1000, maxBytes: 1_000_000 }),
    fitted,
    'fitting again changes nothing',
  );
});

test('a report over its byte limit is cut to the most entries that fit; the verdict fields stay', () => {
  const fitted = fitReport(failing(25_000, 0), { maxEntries: 1000, maxBytes: 20_000 });
  assert.ok(encodeBuildReport(fitted).length <= 20_000);
  assert.ok(fitted.lintErrors.length > 100 && fitted.lintErrors.length < 1000, `${fitted.lintErrors.length}`);
  assert.equal(fitted.lintErrors.length + fitted.lintErrorsOmitted, 25_000);
  assert.match(fitted.error, /report reduced to fit 20000 bytes/);
  const { commitSha, status, lineCoverage, artefactUrl } = fitted;
  assert.deepEqual(
    [commitSha, status, lineCoverage, artefactUrl],
    ['f'.repeat(40), 'FAILED', 87.5, 'file:///artefacts/x.tar.gz'],
  );
});

test('fitted again, a report says what it left out once, with the counts as they stand; it always fits', () => {
  const once = fitReport(failing(25_000, 0), { maxEntries: 1000, maxBytes: 40_000 });
  const twice = fitReport(once, { maxEntries: 1000, maxBytes: 20_000 });
  assert.equal(twice.lintErrors.length + twice.lintErrorsOmitted, 25_000);
  assert.equal((twice.error.match(/left out of this report/g) ?? []).length, 1);
  assert.match(twice.error, new RegExp(`${twice.lintErrorsOmitted} lint finding\\(s\\) left out`));
  const huge = {
    ...failing(10, 0),
    stages: [{ name: 'test', outcome: 'failed', durationMs: 1, summary: 'x'.repeat(50_000) }],
  };
  const fitted = fitReport(huge, { maxEntries: 1000, maxBytes: 4_096 });
  assert.ok(encodeBuildReport(fitted).length <= 4_096, `${encodeBuildReport(fitted).length} bytes`);
  assert.equal(fitted.status, 'FAILED');
});
