import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { BuildInput } from '../../src/pipeline/buildInput.js';
import { assembleReport, type BuildResults, erroredReport } from '../../src/pipeline/report.js';
import type { StageResults } from '../../src/pipeline/stageDefinition.js';
import type { StageResult } from '../../src/stages/types.js';

const input: BuildInput = {
  taskId: 't',
  commitSha: 'f'.repeat(40),
  branchName: 'main',
  repositoryUrl: 'https://user:secret@git.example.com/r.git',
  attempt: 1,
};

const ok = <T>(value: T, summary = 'ok'): StageResult<T> => ({
  outcome: 'passed',
  durationMs: 5,
  summary,
  value,
});
const bad = <T>(value: T, summary = 'bad'): StageResult<T> => ({
  outcome: 'failed',
  durationMs: 5,
  summary,
  value,
});

const tests = (failedTests: string[], testsRun: number) => ({
  failedTests,
  flakyTests: [],
  testsRun,
  testsSelected: testsRun,
  testsTotal: testsRun,
  exitCode: 0,
  failures: [],
});

// A build's results from install on (each stage passed unless patched; undefined: it did not run).
function results(patch: StageResults): BuildResults {
  const stages: StageResults = {
    install: ok({ cacheHit: true, key: 'k' }),
    lint: ok({ findings: [], details: [] }),
    test: ok(tests([], 4)),
    coverage: ok({ lineCoverage: 75 }),
    artefact: ok({ path: '/a/f.tar.gz', sha256: 'e'.repeat(64), bytes: 10 }),
    ...patch,
  };
  return { stages };
}

describe('assembleReport', () => {
  test('lint clean and tests passed: PASSED with coverage and artefact', () => {
    const report = assembleReport(input, results({}), 1000);
    assert.equal(report.status, 'PASSED');
    assert.equal(report.lineCoverage, 75);
    assert.equal(report.artefactUrl, 'file:///a/f.tar.gz');
    assert.equal(report.artefactSha256, 'e'.repeat(64));
    assert.equal(report.testsRun, 4);
    assert.equal(report.testsSelected, 4);
    assert.equal(report.testsTotal, 4);
    assert.equal(report.error, '');
    assert.equal(report.durationMs, 1000);
    assert.deepEqual(
      report.stages.map((s) => s.name),
      ['install', 'lint', 'test', 'coverage', 'artefact'],
    );
  });

  test('credentials never reach the report', () => {
    assert.equal(assembleReport(input, results({}), 1).repositoryUrl, 'https://git.example.com/r.git');
  });

  test('lint findings alone make it FAILED', () => {
    const report = assembleReport(
      input,
      results({ lint: bad({ findings: ['a.py: would reformat'], details: [] }) }),
      1,
    );
    assert.equal(report.status, 'FAILED');
    assert.deepEqual(report.lintErrors, ['a.py: would reformat']);
    assert.match(report.error, /^lint: /);
  });

  test('the reason names every stage that did not pass', () => {
    const report = assembleReport(
      input,
      results({
        lint: bad({ findings: ['a.py: would reformat'], details: [] }),
        test: bad(tests(['t.py::x'], 3)),
      }),
      1,
    );
    const names = report.stages.filter((s) => s.outcome !== 'passed').map((s) => s.name);
    assert.deepEqual(names, ['lint', 'test']);
    assert.match(report.error, /^lint: .*; test: /);
  });

  test("stages are reported in the table's order, whichever of lint and test finished first", () => {
    const testFirst: BuildResults = {
      stages: {
        test: bad(tests(['t.py::x'], 3)),
        install: ok({ cacheHit: true, key: 'k' }),
        lint: bad({ findings: ['a.py: would reformat'], details: [] }),
      },
    };
    const report = assembleReport(input, testFirst, 1);
    assert.deepEqual(
      report.stages.map((s) => s.name),
      ['install', 'lint', 'test'],
    );
    assert.match(report.error, /^lint: .*; test: /);
  });

  test('failing tests make it FAILED and are listed', () => {
    const report = assembleReport(input, results({ test: bad(tests(['t.py::x'], 3)) }), 1);
    assert.equal(report.status, 'FAILED');
    assert.deepEqual(report.failedTests, ['t.py::x']);
  });

  test('a test run over its time limit is FAILED with a timeout entry', () => {
    const timedOut: StageResult<never> = {
      outcome: 'timedOut',
      durationMs: 9,
      summary: 'tests exceeded 5 ms',
    };
    const report = assembleReport(input, results({ test: timedOut, coverage: undefined }), 1);
    assert.equal(report.status, 'FAILED');
    assert.deepEqual(report.failedTests, ['TIMEOUT: tests exceeded 5 ms']);
  });

  test('dependencies that cannot be installed: FAILED, no tests claimed', () => {
    const report = assembleReport(
      input,
      results({
        install: bad({ cacheHit: false, key: 'k' }, 'no such package'),
        lint: undefined,
        test: undefined,
        coverage: undefined,
      }),
      1,
    );
    assert.equal(report.status, 'FAILED');
    assert.equal(report.error, 'install: no such package');
    assert.equal(report.testsRun, 0);
  });

  test('no verdict: ERRORED with the reason', () => {
    const report = erroredReport(input, new Error('repository unreachable'), 7);
    assert.equal(report.status, 'ERRORED');
    assert.equal(report.error, 'repository unreachable');
    assert.equal(report.commitSha, input.commitSha);
  });
});
