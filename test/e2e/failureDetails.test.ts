import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type BuildReport, encodeBuildReport, type TestFailure } from '../../src/delivery/contracts.js';
import type { Files } from '../support/fixtureRepo.js';
import { createPipelineHarness, type PipelineHarness } from '../support/pipelineHarness.js';
import { readArtefact } from '../support/readArtefact.js';

// What an agent is told of each failure and finding: why, where, and (for a formatter) the diff to apply.
const py = (...lines: string[]) => `${lines.join('\n')}\n`;

const PYPROJECT = py(
  '[tool.pytest.ini_options]',
  'pythonpath = ["."]',
  '',
  '[tool.coverage.run]',
  'source = ["pkg"]',
);

const FAILING: Files = {
  'pyproject.toml': PYPROJECT,
  'pkg/__init__.py': py('def add(a, b):', '    return a + b'),
  'pkg/deep.py': py(
    'def outer(value):',
    '    return middle(value)',
    '',
    '',
    'def middle(value):',
    '    return inner(value)',
    '',
    '',
    'def inner(value):',
    '    raise ValueError(f"no answer for {value}")',
  ),
  'pkg/ugly.py': 'import os\nx=1\n',
  // black would reformat every line: a diff larger than a report carries (4 KiB).
  'pkg/wide.py': Array.from({ length: 300 }, (_, k) => `value_${k}=${k}\n`).join(''),
  'tests/test_details.py': py(
    'import os',
    '',
    'import pytest',
    '',
    'from pkg import add',
    'from pkg.deep import outer',
    '',
    '',
    '@pytest.fixture',
    'def broken():',
    '    raise RuntimeError("the fixture broke")',
    '',
    '',
    'def test_values():',
    '    print("computing the sum")',
    '    assert add(1, 2) == 4',
    '',
    '',
    'def test_deep():',
    '    outer(42)',
    '',
    '',
    'def test_setup(broken):',
    '    assert broken',
    '',
    '',
    'def test_flaky(tmp_path_factory):',
    '    marker = os.path.join(os.environ["TMPDIR"], "flaky-once")',
    '    if not os.path.exists(marker):',
    '        open(marker, "w").close()',
    '        assert "first" == "second"',
  ),
};

describe('failures and findings an agent can act on', () => {
  let harness: PipelineHarness;

  before(async () => {
    harness = await createPipelineHarness();
  });

  after(async () => {
    await harness.close();
  });

  const build = async (name: string, files: Files): Promise<[BuildReport, () => Promise<BuildReport>]> => {
    const repo = await harness.newRepo(name);
    const sha = await repo.commit(files, name);
    repo.push('main');
    return [await harness.build(repo, sha), () => harness.build(repo, sha)];
  };
  const failure = (report: BuildReport, nodeId: string): TestFailure => {
    const found = report.failures.find((entry) => entry.nodeId === nodeId);
    assert.ok(found, `${nodeId} in ${JSON.stringify(report.failures.map((entry) => entry.nodeId))}`);
    return found;
  };

  test('each failure says why and where; each finding what and how to fix it; the same twice', async () => {
    const [report, again] = await build('details', FAILING);
    assert.equal(report.status, 'FAILED');
    assert.deepEqual(report.failedTests, [
      'tests/test_details.py::test_values',
      'tests/test_details.py::test_deep',
      'tests/test_details.py::test_setup',
    ]);
    assert.deepEqual(
      report.failures.map((entry) => [entry.nodeId, entry.kind]),
      [
        ['tests/test_details.py::test_values', 'failed'],
        ['tests/test_details.py::test_deep', 'failed'],
        ['tests/test_details.py::test_setup', 'error'],
        ['tests/test_details.py::test_flaky', 'flaky'],
      ],
    );
    const values = failure(report, 'tests/test_details.py::test_values');
    assert.equal(values.message, 'AssertionError: assert 3 == 4\n +  where 3 = add(1, 2)');
    assert.equal(values.location, 'tests/test_details.py:16');
    assert.equal(
      values.traceback,
      'tests/test_details.py:16: in test_values\n    assert add(1, 2) == 4\nE   assert 3 == 4\nE    +  where 3 = add(1, 2)',
    );
    assert.equal(values.output, '----- Captured stdout call -----\ncomputing the sum\n');
    const deep = failure(report, 'tests/test_details.py::test_deep');
    assert.equal(deep.message, 'ValueError: no answer for 42');
    // The innermost frame inside the repository: where the package raised, not the test's line.
    assert.equal(deep.location, 'pkg/deep.py:10');
    assert.match(
      deep.traceback,
      /pkg\/deep\.py:2: in outer[\s\S]*pkg\/deep\.py:6: in middle[\s\S]*pkg\/deep\.py:10: in inner/,
    );
    const setup = failure(report, 'tests/test_details.py::test_setup');
    assert.equal(setup.message, 'RuntimeError: the fixture broke');
    assert.equal(setup.location, 'tests/test_details.py:11');
    const flaky = failure(report, 'tests/test_details.py::test_flaky');
    assert.match(flaky.message, /^AssertionError: assert 'first' == 'second'/);
    assert.equal(flaky.location, 'tests/test_details.py:31');
    for (const entry of report.failures) {
      assert.doesNotMatch(JSON.stringify(entry), /\/workspace|\/ci\/|\\u001b/, 'no runner path, no colour');
    }

    assert.deepEqual(report.lintErrors, [
      'pkg/ugly.py: would reformat',
      'pkg/wide.py: would reformat',
      'pkg/ugly.py:1:8: F401 `os` imported but unused',
    ]);
    const [format, wide, unused] = report.lintFindings;
    assert.equal(wide?.path, 'pkg/wide.py');
    assert.equal(wide?.diff, '', 'a diff over 4 KiB is not carried');
    assert.deepEqual(
      { ...format, diff: '' },
      {
        tool: 'black',
        path: 'pkg/ugly.py',
        line: 0,
        column: 0,
        code: '',
        message: 'would reformat',
        fixable: true,
        diff: '',
      },
    );
    assert.equal(
      format?.diff,
      '--- pkg/ugly.py\n+++ pkg/ugly.py\n@@ -1,2 +1,3 @@\n import os\n-x=1\n+\n+x = 1\n',
    );
    assert.deepEqual(unused, {
      tool: 'ruff',
      path: 'pkg/ugly.py',
      line: 1,
      column: 8,
      code: 'F401',
      message: '`os` imported but unused',
      fixable: true,
      diff: '',
    });
    assert.equal(report.lintFindings.length, report.lintErrors.length);

    // What the formatter was asked, from lint's log in the artefact: its `--diff` run names the files.
    const diffRuns = async (of: BuildReport) => {
      const log = (await readArtefact(fileURLToPath(of.artefactUrl))).get('reports/lint.log')?.content;
      assert.ok(log, 'lint.log in the artefact');
      return log.split('\n').filter((line) => line.startsWith('$ ') && line.includes('black --diff'));
    };
    const [asked] = await diffRuns(report);
    assert.match(asked ?? '', /pkg\/ugly\.py.*pkg\/wide\.py/, 'the first build asked black for both');
    // The same commit again: the same details, byte for byte.
    const second = await again();
    assert.equal(JSON.stringify(second.failures), JSON.stringify(report.failures));
    assert.equal(JSON.stringify(second.lintFindings), JSON.stringify(report.lintFindings));
    // The formatter's diffs of the unchanged files were remembered, the one too large to carry as none: black did
    // not format either again.
    assert.deepEqual(await diffRuns(second), []);
  });

  test('a test file that does not parse: its file and line, and the SyntaxError', async () => {
    const [report] = await build('syntax', {
      'pyproject.toml': PYPROJECT,
      'pkg/__init__.py': '',
      'tests/test_broken.py': py('def test_ok():', '    assert True', '', '', 'def test_bad(:', '    pass'),
    });
    assert.equal(report.status, 'FAILED');
    assert.deepEqual(report.failedTests, ['tests/test_broken.py']);
    const [collection] = report.failures;
    assert.equal(collection?.kind, 'collection');
    assert.equal(collection?.location, 'tests/test_broken.py:5');
    assert.match(collection?.message ?? '', /^SyntaxError: /);
  });

  test('a test that hangs: stopped at the limit, with the stack where it hung', async () => {
    const [report] = await build('hang', {
      'pyproject.toml': `${PYPROJECT}\n[tool.ci-runner]\ntest-timeout-sec = 8\n`,
      'pkg/__init__.py': py(
        'import time',
        '',
        '',
        'def wait_forever():',
        '    while True:',
        '        time.sleep(0.1)',
      ),
      'tests/test_hang.py': py(
        'from pkg import wait_forever',
        '',
        '',
        'def test_hangs():',
        '    wait_forever()',
      ),
    });
    assert.equal(report.status, 'FAILED');
    const timeout = report.failures.at(-1);
    assert.equal(timeout?.kind, 'timeout');
    assert.equal(timeout?.nodeId, report.failedTests.at(-1));
    assert.match(timeout?.nodeId ?? '', /^TIMEOUT: tests\/test_hang\.py::test_hangs was running/);
    assert.equal(timeout?.location, 'pkg/__init__.py:6');
    assert.match(
      timeout?.traceback ?? '',
      /File "pkg\/__init__\.py", line 6 in wait_forever\n {2}File "tests\/test_hang\.py", line 5 in test_hangs/,
    );
    assert.doesNotMatch(timeout?.traceback ?? '', /0x[0-9a-f]{6,}/, 'no addresses');
  });

  test('pytest killed while a test ran: crashed, naming the test', async () => {
    const [report] = await build('crash', {
      'pyproject.toml': PYPROJECT,
      'pkg/__init__.py': '',
      'tests/test_crash.py': py(
        'import os',
        'import signal',
        '',
        '',
        'def test_dies():',
        '    os.kill(os.getpid(), signal.SIGKILL)',
      ),
    });
    assert.equal(report.status, 'FAILED');
    assert.equal(report.failures.length, 1);
    const [crashed] = report.failures;
    assert.equal(crashed?.kind, 'crashed');
    assert.equal(crashed?.nodeId, report.failedTests[0]);
    assert.match(
      crashed?.message ?? '',
      /^tests\/test_crash\.py::test_dies was running when pytest exited \(.*SIGKILL/,
    );
  });

  test('hostile output: a 200 MB print and a 10 MB message, invalid UTF-8, NUL, colour, a fake runner path', async () => {
    const [report] = await build('hostile-output', {
      'pyproject.toml': PYPROJECT,
      'pkg/__init__.py': '',
      'tests/test_loud.py': py(
        'import sys',
        '',
        '',
        'def test_loud():',
        '    chunk = "x" * (1 << 20)',
        '    for _ in range(200):',
        '        sys.stdout.write(chunk)',
        '    sys.stdout.buffer.write(b"\\xff\\xfe\\x00\\x1b[31mred\\x1b[0m /workspace/../../etc/passwd\\n")',
        '    raise AssertionError("y" * (10 << 20))',
      ),
    });
    assert.equal(report.status, 'FAILED');
    const size = encodeBuildReport(report).length;
    assert.ok(size < 512 * 1024, `the report is ${size} bytes`);
    const [loud] = report.failures;
    assert.equal(loud?.kind, 'failed');
    assert.match(loud?.message ?? '', /^AssertionError: y{100}/);
    assert.match(loud?.message ?? '', /… \(\d+ bytes more\)$/);
    assert.ok(Buffer.byteLength(loud?.message ?? '') < 2200);
    assert.ok(Buffer.byteLength(loud?.output ?? '') < 2200);
    assert.ok(!loud?.output.includes('\u001b') && !loud?.output.includes('\u0000'), 'no escape, no NUL');
    assert.match(loud?.output ?? '', /\uFFFD\uFFFD\?\[31mred\?\[0m|\uFFFD\uFFFD\?red/);
    assert.doesNotMatch(loud?.output ?? '', /\/workspace\//);
  });
});
