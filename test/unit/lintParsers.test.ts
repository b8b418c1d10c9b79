import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { lineCoverage } from '../../src/stages/coverage.js';
import {
  formatRuffFindings,
  parseBlackOutput,
  parseRuffFormatOutput,
} from '../../src/stages/lintFindings.js';

describe('lint output parsing', () => {
  test('ruff JSON becomes path:line:col: CODE message', () => {
    const findings = formatRuffFindings(
      [
        {
          code: 'F401',
          message: '`os` imported but unused',
          filename: '/b/src/pkg/m.py',
          location: { row: 1, column: 8 },
        },
        { code: null, message: 'SyntaxError: bad', filename: '/b/src/x.py', location: { row: 2, column: 1 } },
      ],
      '/b/src',
    );
    assert.deepEqual(findings, [
      'pkg/m.py:1:8: F401 `os` imported but unused',
      'x.py:2:1: E999 SyntaxError: bad',
    ]);
  });

  test("ruff format's check output, before and after 0.16, becomes black's entry form", () => {
    const old = [
      'error: Failed to parse /b/src/bad.py:1:7: Expected a parameter or the end of the parameter list',
      'Would reformat: ugly.py',
      'error: Failed to format pkg/odd.py: source contains syntax errors',
      '1 file would be reformatted, 1 file already formatted',
    ].join('\n');
    assert.deepEqual(parseRuffFormatOutput(old, '/b/src'), [
      'bad.py: cannot format (Expected a parameter or the end of the parameter list at line 1, column 7)',
      'ugly.py: would reformat',
      'pkg/odd.py: cannot format (source contains syntax errors)',
    ]);
    const concise = [
      'bad.py:1:7: invalid-syntax: Expected a parameter or the end of the parameter list',
      'ugly.py:1:2: unformatted: File would be reformatted',
      'README.md:4:2: unformatted: File would be reformatted',
      '2 files would be reformatted, 1 file already formatted',
    ].join('\n');
    assert.deepEqual(parseRuffFormatOutput(concise, '/b/src'), [
      'bad.py: cannot format (Expected a parameter or the end of the parameter list at line 1, column 7)',
      'ugly.py: would reformat',
      'README.md: would reformat',
    ]);
  });

  test("black's check output becomes one entry per file", () => {
    const stderr = [
      'would reformat /b/src/pkg/m.py',
      'would reformat tests/t.py',
      'error: cannot format /b/src/bad.py: Cannot parse: 1:4: def (',
      '',
      'Oh no! 💥 💔 💥',
      '2 files would be reformatted, 1 file would fail to reformat.',
    ].join('\n');
    assert.deepEqual(parseBlackOutput(stderr, '/b/src'), [
      'pkg/m.py: would reformat',
      'tests/t.py: would reformat',
      'bad.py: cannot format (Cannot parse: 1:4: def ()',
    ]);
  });

  test("black 26's unparsable file is one entry naming the file and the error", () => {
    const stderr = [
      'error: cannot parse: /workspace/pkg/bad.py:1:6',
      '    def f(:',
      '         ^',
      'ParseError: bad input',
      '',
      'Oh no! 💥 💔 💥',
      '1 file would be left unchanged, 1 file would fail to reformat.',
    ].join('\n');
    assert.deepEqual(parseBlackOutput(stderr, '/workspace'), [
      'pkg/bad.py: cannot format (ParseError: bad input at line 1, column 6)',
    ]);
  });
});

describe('lineCoverage', () => {
  test('is covered lines over statements, not percent_covered', () => {
    assert.equal(lineCoverage({ covered_lines: 3, num_statements: 4 }), 75);
    assert.equal(lineCoverage({ covered_lines: 0, num_statements: 0 }), 0);
  });
});
