import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import protobuf from 'protobufjs';
import {
  type BuildReport,
  type CommitResult,
  decodeBuildReport,
  decodeCommitResult,
  encodeBuildReport,
  encodeCommitResult,
} from '../../src/delivery/contracts.js';

const report: BuildReport = {
  commitSha: 'a'.repeat(40),
  status: 'FAILED',
  failedTests: ['tests/test_x.py::test_a[1-2]', 'tests/test_x.py::TestK::test_b'],
  lintErrors: ['pkg/mod.py:3:1: F401 `os` imported but unused', 'pkg/mod.py: would reformat'],
  lineCoverage: 87.5,
  artefactUrl: 'file:///artefacts/aaaa.tar.gz',
  taskId: 'task-42',
  branchName: 'feature/x',
  repositoryUrl: 'https://git.example.com/r.git',
  error: 'test: 2 test(s) failed',
  stages: [{ name: 'test', outcome: 'failed', durationMs: 1234, summary: '2 test(s) failed' }],
  artefactSha256: 'b'.repeat(64),
  durationMs: 98765,
  testsRun: 10,
  attempt: 2,
  sandbox: 'bubblewrap as uid 812345 (unprivileged, all capabilities dropped)',
  pythonVersion: '3.11.7',
  republished: false,
  flakyTests: [{ nodeId: 'tests/test_x.py::test_c[0]', flips: 3 }],
  supersededBy: 'c'.repeat(40),
  testsSelected: 3,
  testsTotal: 10,
  artefactLink: 'https://artefacts.example.com/a.tar.gz',
  workerHost: 'worker-3',
  warm: true,
  failedTestsOmitted: 2,
  lintErrorsOmitted: 3,
  failures: [
    {
      nodeId: 'tests/test_a.py::test_b',
      kind: 'failed',
      message: 'AssertionError: assert 3 == 4',
      location: 'pkg/a.py:12',
      traceback: 'tests/test_a.py:3: in test_b\n    assert f() == 4\nE   AssertionError: assert 3 == 4',
      output: '----- Captured stdout call -----\nhello\n',
    },
  ],
  lintFindings: [
    {
      tool: 'ruff',
      path: 'pkg/a.py',
      line: 1,
      column: 8,
      code: 'F401',
      message: '`os` imported but unused',
      fixable: true,
      diff: '',
    },
  ],
  failuresTruncated: 1,
};

describe('contracts', () => {
  test('BuildReport round-trips every field', () => {
    assert.deepEqual(decodeBuildReport(encodeBuildReport(report)), report);
  });

  test('CommitResult round-trips every field', () => {
    const message: CommitResult = {
      taskId: 't-1',
      commitSha: 'c'.repeat(40),
      branchName: 'main',
      status: 'SUCCESS',
      repositoryUrl: 'https://git.example.com/r.git',
    };
    assert.deepEqual(decodeCommitResult(encodeCommitResult(message)), message);
  });

  test('the same report always encodes to the same bytes', () => {
    assert.deepEqual(encodeBuildReport(report), encodeBuildReport(structuredClone(report)));
  });

  test('BuildReport fields 1-6 keep the phase document numbers and types', () => {
    const root = protobuf.parse(readFileSync(new URL('../../proto/ci.proto', import.meta.url), 'utf8'), {
      keepCase: true,
    }).root;
    const type = root.lookupType('ci.BuildReport');
    const frozen = [
      ['commit_sha', 1, 'string', false],
      ['status', 2, 'string', false],
      ['failed_tests', 3, 'string', true],
      ['lint_errors', 4, 'string', true],
      ['line_coverage', 5, 'double', false],
      ['artefact_url', 6, 'string', false],
    ] as const;
    for (const [name, id, kind, repeated] of frozen) {
      const field = type.fields[name];
      assert.ok(field, `field ${name} exists`);
      assert.equal(field.id, id, name);
      assert.equal(field.type, kind, name);
      assert.equal(field.repeated, repeated, name);
    }
  });

  test('an orchestrator that knows only fields 1-6 reads a full report', () => {
    const legacy = protobuf.parse(`syntax = "proto3";
      message BuildReport { string commit_sha = 1; string status = 2; repeated string failed_tests = 3;
        repeated string lint_errors = 4; double line_coverage = 5; string artefact_url = 6; }`).root;
    const decoded = legacy
      .lookupType('BuildReport')
      .toObject(legacy.lookupType('BuildReport').decode(encodeBuildReport(report)));
    assert.deepEqual(decoded, {
      commitSha: report.commitSha,
      status: 'FAILED',
      failedTests: report.failedTests,
      lintErrors: report.lintErrors,
      lineCoverage: 87.5,
      artefactUrl: report.artefactUrl,
    });
  });
});
