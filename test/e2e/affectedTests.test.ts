import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { BuildReport } from '../../src/delivery/contracts.js';
import type { FixtureRepo } from '../support/fixtureRepo.js';
import { createPipelineHarness, type PipelineHarness } from '../support/pipelineHarness.js';
import { readArtefact } from '../support/readArtefact.js';

const py = (...lines: string[]) => `${lines.join('\n')}\n`;

const PYPROJECT = py(
  '[tool.pytest.ini_options]',
  'pythonpath = ["."]',
  'markers = ["fast: quick tests"]',
  '',
  '[tool.coverage.run]',
  // Matched by module name, which testmon's own question (a file, no frame) cannot answer.
  'source_pkgs = ["calc"]',
  '',
  '[tool.ci-runner]',
  'select = "affected"',
  'lint = false',
);

// add and sub share a module (an edit to add moves sub's lines), mul has its own; a test file per function.
const arith = (add: string[], sub: string[]) =>
  py(
    'def add(a, b):',
    ...add.map((line) => `    ${line}`),
    '',
    '',
    'def sub(a, b):',
    ...sub.map((line) => `    ${line}`),
  );
const testFile = (module: string, name: string, cases: Array<[number, number, number]>) =>
  py(
    'import pytest',
    '',
    `from calc.${module} import ${name}`,
    '',
    '',
    '@pytest.mark.fast',
    '@pytest.mark.parametrize("a,b,expected", [',
    ...cases.map(([a, b, expected]) => `    (${a}, ${b}, ${expected}),`),
    '])',
    `def test_${name}(a, b, expected):`,
    `    assert ${name}(a, b) == expected`,
  );

const MUL = py(
  'def mul(a, b):',
  '    total = 0',
  '    for _ in range(b):',
  '        total += a',
  '    return total',
);

const TREE = {
  'pyproject.toml': PYPROJECT,
  'conftest.py': py('import pytest'),
  'calc/__init__.py': '',
  'calc/arith.py': arith(['return a + b'], ['return a - b']),
  'calc/mul.py': MUL,
  'calc/unused.py': py('def unused(a):', '    if a:', '        return 1', '    return 0'),
  'tests/__init__.py': '',
  'tests/test_add.py': testFile('arith', 'add', [
    [1, 2, 3],
    [2, 2, 4],
  ]),
  'tests/test_sub.py': testFile('arith', 'sub', [
    [3, 1, 2],
    [5, 5, 0],
    [9, 1, 8],
  ]),
  'tests/test_mul.py': testFile('mul', 'mul', [
    [2, 3, 6],
    [4, 0, 0],
  ]),
};

describe('select = "affected": only the tests a change can affect run, with the whole suite\'s coverage', () => {
  let harness: PipelineHarness;
  let repo: FixtureRepo;
  before(async () => {
    harness = await createPipelineHarness();
    repo = await harness.newRepo('affected');
  });
  after(async () => {
    await harness.close();
  });

  // Commits to a fixture repository and pushes its main branch; returns the commit's sha.
  const commitTo = async (to: FixtureRepo, files: Record<string, string>, message: string) => {
    const sha = await to.commit(files, message);
    to.push('main');
    return sha;
  };
  const commit = (files: Record<string, string>, message: string) => commitTo(repo, files, message);
  // The same commit built with every test (a full run's figures to compare with).
  const fullRun = async (sha: string) => harness.build(repo, sha, { selectFullEvery: 1 });
  const logged = (text: string) => harness.lastLog.some((line) => line.includes(text));
  // The totals of the coverage JSON the build kept in its artefact.
  const coverageTotals = async (report: BuildReport): Promise<Record<string, unknown>> => {
    const entries = await readArtefact(fileURLToPath(report.artefactUrl));
    const json = entries.get('reports/coverage.json')?.content;
    assert.ok(json, 'the artefact holds coverage.json');
    return JSON.parse(json).totals;
  };
  const expectSame = (affected: BuildReport, full: BuildReport) => {
    assert.deepEqual(affected.failedTests, full.failedTests);
    assert.ok(
      Math.abs(affected.lineCoverage - full.lineCoverage) < 0.01,
      `coverage ${affected.lineCoverage} (affected) vs ${full.lineCoverage} (full)`,
    );
    assert.equal(affected.testsTotal, full.testsTotal);
  };

  test('the first build runs every test and records; a change to one function runs its tests only', async () => {
    const first = await commit(TREE, 'first');
    const one = await harness.build(repo, first);
    assert.equal(one.status, 'PASSED', one.error);
    assert.equal(one.testsSelected, 7);
    assert.equal(one.testsTotal, 7);
    assert.ok(logged('no earlier build in this history left test data'), harness.lastLog.join('\n'));
    assert.ok(logged('kept the test selection data for later builds'));

    const second = await commit({ 'calc/arith.py': arith(['return a + b'], ['return -(b - a)']) }, 'sub');
    const two = await harness.build(repo, second);
    assert.equal(two.status, 'PASSED', two.error);
    assert.equal(two.testsSelected, 3, 'the three cases of test_sub');
    assert.equal(two.testsTotal, 7);
    assert.equal(two.testsRun, 3);
    assert.ok(logged(`from the data of ${first.slice(0, 12)}`), harness.lastLog.join('\n'));
    assert.ok(logged('tests selected: 3 of 7'), harness.lastLog.join('\n'));
    assert.ok(
      logged('2 test file(s) not collected'),
      `test_mul.py, and test_add.py: it imports calc.arith, but its import runs none of sub's body\n${harness.lastLog.join('\n')}`,
    );
    // The lines of add and mul come from the first build's record of the tests that did not run.
    expectSame(two, await fullRun(second));
  });

  test('a bug in one function fails exactly the tests a full run fails', async () => {
    const third = await commit(
      { 'calc/mul.py': py('def mul(a, b):', '    return a * b + 1') },
      'mul, broken',
    );
    const broken = await harness.build(repo, third);
    assert.equal(broken.status, 'FAILED');
    assert.deepEqual(broken.failedTests, [
      'tests/test_mul.py::test_mul[2-3-6]',
      'tests/test_mul.py::test_mul[4-0-0]',
    ]);
    assert.equal(broken.testsSelected, 2);
    expectSame(broken, await fullRun(third));

    // sub's lines, which a line added to add moved down, are mapped to where they are now.
    const fourth = await commit(
      { 'calc/arith.py': arith(['total = a + b', 'return total'], ['return -(b - a)']), 'calc/mul.py': MUL },
      'add grows; mul fixed',
    );
    const moved = await harness.build(repo, fourth);
    assert.equal(moved.status, 'PASSED', moved.error);
    assert.equal(moved.testsSelected, 2 + 2, 'test_add and test_mul');
    expectSame(moved, await fullRun(fourth));
  });

  test('a conftest.py change runs everything; so does every SELECT_FULL_EVERY-th build', async () => {
    const fifth = await commit({ 'conftest.py': py('import pytest', '', 'SEEN = True') }, 'conftest');
    const report = await harness.build(repo, fifth);
    assert.equal(report.testsSelected, report.testsTotal);
    assert.ok(logged('conftest.py'), harness.lastLog.join('\n'));

    const sixth = await commit(
      { 'calc/arith.py': arith(['total = a + b', 'return total'], ['return a - b']) },
      'sub',
    );
    const affected = await harness.build(repo, sixth, { selectFullEvery: 3 });
    assert.equal(affected.testsSelected, 3, '1 build since the full run');
    const seventh = await commit({ 'calc/arith.py': arith(['return a + b'], ['return a - b']) }, 'add');
    const again = await harness.build(repo, seventh, { selectFullEvery: 3 });
    assert.equal(again.testsSelected, 2);
    const eighth = await commit({ 'calc/arith.py': arith(['return a + b'], ['return (a - b)']) }, 'sub');
    const full = await harness.build(repo, eighth, { selectFullEvery: 3 });
    assert.equal(full.testsSelected, 7);
    assert.ok(logged('SELECT_FULL_EVERY'));
  });

  test('without select = "affected" every test runs and both counts say so', async () => {
    const plain = await harness.newRepo('not-affected');
    const sha = await plain.commit(
      { ...TREE, 'pyproject.toml': PYPROJECT.replace('select = "affected"', '') },
      'all',
    );
    plain.push('main');
    const report = await harness.build(plain, sha);
    assert.equal(report.status, 'PASSED', report.error);
    assert.equal(report.testsSelected, 7);
    assert.equal(report.testsTotal, 7);
    assert.ok(!logged('pytest-testmon'));
  });

  test('with branch coverage, the arcs of the tests that did not run are carried: branch totals equal a full run', async () => {
    const branches = await harness.newRepo('branches');
    const pyproject = PYPROJECT.replace('source_pkgs = ["calc"]', 'source_pkgs = ["calc"]\nbranch = true');
    const first = await branches.commit({ ...TREE, 'pyproject.toml': pyproject }, 'branches');
    branches.push('main');
    assert.equal((await harness.build(branches, first)).testsSelected, 7);
    const second = await branches.commit(
      { 'calc/arith.py': arith(['if a < 0:', '    a = -a', 'return a + b'], ['return -(b - a)']) },
      'add gains a branch; sub changes',
    );
    branches.push('main');
    const affected = await harness.build(branches, second);
    assert.equal(affected.status, 'PASSED', affected.error);
    assert.equal(affected.testsRun, 5, 'test_add and test_sub');
    assert.ok(!logged('not possible here'), harness.lastLog.join('\n'));
    const full = await harness.build(branches, second, { selectFullEvery: 1 });
    assert.equal(full.testsRun, 7);
    expectSame(affected, full);
    const [mine, theirs] = [await coverageTotals(affected), await coverageTotals(full)];
    assert.ok((theirs.num_branches as number) > 0, "mul's loop and add's if are branches");
    assert.ok((theirs.covered_branches as number) > 0);
    for (const key of ['num_branches', 'covered_branches', 'missing_branches', 'num_partial_branches']) {
      assert.equal(mine[key], theirs[key], `${key}: affected ${mine[key]}, full ${theirs[key]}`);
    }
    const cache = join(process.env.CI_RUNNER_TEST_CACHE_DIR ?? '.cache/test', 'test-selection');
    assert.ok((await readdir(cache)).length >= 1, 'the affected repository has data in the cache');
  });

  test('a test file with no selected test is not collected, yet what its import ran counts; a change to what it imports collects it', async () => {
    const imports = await harness.newRepo('imports');
    // build() runs only when the test file imports calc.consts: import-time lines, in no test's record.
    const consts = py(
      'def build():',
      '    out = []',
      '    for k in range(2):',
      '        out.append(k)',
      '    return out',
      '',
      '',
      'CASES = build()',
    );
    const other = (body: string) => py('def double(x):', `    return ${body}`);
    const files = {
      'pyproject.toml': PYPROJECT,
      'conftest.py': py('import pytest'),
      'calc/__init__.py': '',
      'calc/consts.py': consts,
      'calc/other.py': other('2 * x'),
      'tests/__init__.py': '',
      'tests/test_consts.py': py(
        'import pytest',
        '',
        'from calc.consts import CASES',
        '',
        '',
        '@pytest.mark.fast',
        'def test_cases():',
        '    assert CASES == [0, 1]',
      ),
      'tests/test_other.py': py(
        'import pytest',
        '',
        'from calc.other import double',
        '',
        '',
        '@pytest.mark.fast',
        'def test_double():',
        '    assert double(2) == 4',
      ),
      // Its import names nothing of calc: with one test affected, the other function's cases are never made.
      'tests/test_both.py': py(
        'import pytest',
        '',
        '',
        '@pytest.mark.fast',
        'def test_double_inside():',
        '    from calc.other import double',
        '',
        '    assert double(3) == 6',
        '',
        '',
        '@pytest.mark.fast',
        '@pytest.mark.parametrize("k", range(3))',
        'def test_unrelated(k):',
        '    assert k >= 0',
      ),
    };
    const first = await imports.commit(files, 'first');
    imports.push('main');
    const one = await harness.build(imports, first);
    assert.equal(one.status, 'PASSED', one.error);

    const second = await imports.commit({ 'calc/other.py': other('x + x') }, 'other');
    imports.push('main');
    const two = await harness.build(imports, second);
    assert.equal(two.status, 'PASSED', two.error);
    assert.equal(two.testsRun, 2, 'test_double and test_double_inside');
    assert.equal(two.testsTotal, 6);
    assert.ok(logged('1 test file(s) not collected'), harness.lastLog.join('\n'));
    assert.ok(logged('1 test function(s) made no items'), 'test_unrelated');
    // Only the changed file was analysed again: the others' analysis came from the first build.
    assert.ok(logged('coverage analysed 1 of 3 file(s)'), harness.lastLog.join('\n'));
    expectSame(two, await harness.build(imports, second, { selectFullEvery: 1 }));
    assert.ok(logged('coverage analysed 0 of 3 file(s)'), 'the same tree: every file from the cache');

    // No test executes consts.py, but importing test_consts.py does, and its module-level code changed: that file is
    // collected, and its test runs (what its import built may differ).
    const third = await imports.commit(
      { 'calc/consts.py': `${consts}\n\ndef extra():\n    return 1\n` },
      'consts',
    );
    imports.push('main');
    const three = await harness.build(imports, third);
    assert.equal(three.status, 'PASSED', three.error);
    assert.equal(three.testsRun, 1, 'test_cases');
    assert.equal(three.testsTotal, 6);
    assert.ok(logged('2 test file(s) not collected'), 'test_other.py and test_both.py');
    expectSame(three, await harness.build(imports, third, { selectFullEvery: 1 }));

    // The body of build(), which importing test_consts.py runs: that file is collected again, and its test fails as
    // in a full run (CASES is now [0, 1, 2]).
    const fourth = await imports.commit(
      { 'calc/consts.py': `${consts.replace('range(2)', 'range(3)')}\n\ndef extra():\n    return 1\n` },
      'consts, build() changed',
    );
    imports.push('main');
    const four = await harness.build(imports, fourth);
    assert.equal(four.status, 'FAILED', four.error);
    assert.deepEqual(four.failedTests, ['tests/test_consts.py::test_cases']);
    expectSame(four, await harness.build(imports, fourth, { selectFullEvery: 1 }));
  });

  test('code a conftest ran at import changed: every test runs, as its cases may differ', async () => {
    const shared = await harness.newRepo('import-time');
    // build() runs once, as conftest.py imports calc.cases; test_cases.py only names CASES (already imported).
    const cases = (second: number) =>
      py(
        'def build():',
        `    return [1, ${second}]`,
        '',
        '',
        'CASES = build()',
        '',
        '',
        'def unused():',
        '    return 0',
      );
    const files = {
      'pyproject.toml': PYPROJECT,
      'conftest.py': py('import pytest', '', 'from calc.cases import CASES  # noqa: F401'),
      'calc/__init__.py': '',
      'calc/cases.py': cases(2),
      'calc/mul.py': MUL,
      'tests/__init__.py': '',
      'tests/test_cases.py': py(
        'import pytest',
        '',
        'from calc.cases import CASES',
        '',
        '',
        '@pytest.mark.fast',
        '@pytest.mark.parametrize("n", CASES, ids=["first", "second"])',
        'def test_small(n):',
        '    assert n < 3',
      ),
      'tests/test_mul.py': testFile('mul', 'mul', [[2, 3, 6]]),
    };
    const first = await shared.commit(files, 'first');
    shared.push('main');
    assert.equal((await harness.build(shared, first)).status, 'PASSED');

    // A body nothing runs at import: the tests of neither file run, and neither file is collected.
    const second = await shared.commit(
      { 'calc/cases.py': cases(2).replace('return 0', 'return 1') },
      'unused changed',
    );
    shared.push('main');
    const two = await harness.build(shared, second);
    assert.equal(two.status, 'PASSED', two.error);
    assert.equal(two.testsRun, 0);
    assert.ok(logged('2 test file(s) not collected'), harness.lastLog.join('\n'));

    // build()'s body ran at import: the same test ids, but the second case is now 5, and it fails as in a full run.
    const third = await shared.commit(
      { 'calc/cases.py': cases(5).replace('return 0', 'return 1') },
      'build changed',
    );
    shared.push('main');
    const three = await harness.build(shared, third);
    assert.equal(three.status, 'FAILED', three.error);
    assert.deepEqual(three.failedTests, ['tests/test_cases.py::test_small[second]']);
    assert.ok(
      logged('code that ran as conftests loaded changed in calc/cases.py'),
      harness.lastLog.join('\n'),
    );
    expectSame(three, await harness.build(shared, third, { selectFullEvery: 1 }));

    // The same, with build() run as test_a.py is imported first: test_cases.py, which only names CASES, runs too.
    const byTest = await harness.newRepo('import-time-by-test');
    const firstByTest = await byTest.commit(
      {
        ...files,
        'conftest.py': py('import pytest'),
        'tests/test_a.py': py(
          'import pytest',
          '',
          'import calc.cases',
          '',
          '',
          '@pytest.mark.fast',
          'def test_a():',
          '    assert calc.cases.CASES',
        ),
      },
      'first',
    );
    byTest.push('main');
    assert.equal((await harness.build(byTest, firstByTest)).status, 'PASSED');
    const changed = await byTest.commit({ 'calc/cases.py': cases(5) }, 'build changed');
    byTest.push('main');
    const four = await harness.build(byTest, changed);
    assert.equal(four.status, 'FAILED', four.error);
    assert.deepEqual(four.failedTests, ['tests/test_cases.py::test_small[second]']);
    expectSame(four, await harness.build(byTest, changed, { selectFullEvery: 1 }));
  });

  test('a case file added to a directory a test file lists at import collects it, and the new case runs', async () => {
    const listed = await harness.newRepo('listed-cases');
    const files = {
      'pyproject.toml': PYPROJECT,
      'conftest.py': py('import pytest'),
      'calc/__init__.py': '',
      'calc/mul.py': MUL,
      'tests/__init__.py': '',
      'tests/test_mul.py': testFile('mul', 'mul', [[2, 3, 6]]),
      'tests/cases/a.txt': 'a\n',
      // Its cases are the files of a directory: no import statement names them.
      'tests/test_cases.py': py(
        'import pathlib',
        '',
        'import pytest',
        '',
        'CASES = sorted(p.name for p in (pathlib.Path(__file__).parent / "cases").iterdir())',
        '',
        '',
        '@pytest.mark.fast',
        '@pytest.mark.parametrize("name", CASES)',
        'def test_case(name):',
        '    assert name.endswith(".txt")',
      ),
    };
    const first = await listed.commit(files, 'first');
    listed.push('main');
    assert.equal((await harness.build(listed, first)).testsTotal, 2);
    const second = await listed.commit({ 'tests/cases/b.txt': 'b\n' }, 'a new case');
    listed.push('main');
    const report = await harness.build(listed, second);
    assert.equal(report.status, 'PASSED', report.error);
    assert.equal(report.testsTotal, 3, 'the new case counts');
    assert.equal(report.testsRun, 2, "the file's import listed a changed directory: its every case runs");
    assert.ok(logged('1 test file(s) not collected'), 'test_mul.py only');
    expectSame(report, await harness.build(listed, second, { selectFullEvery: 1 }));
  });

  test('a failure seen twice, its code and frames unchanged, is reported without running; a flaky one never is', async () => {
    const failing = await harness.newRepo('carried-failures');
    const push = (files: Record<string, string>, message: string) => commitTo(failing, files, message);
    const brokenMul = (above: string[]) =>
      py(
        ...above,
        'def mul(a, b):',
        '    return check(a) * b',
        '',
        '',
        'def check(a):',
        '    raise ValueError(f"no mul for {a}")',
      );
    const first = await push(
      {
        ...TREE,
        'calc/mul.py': brokenMul([]),
        // Fails the first time in a build, passes on the runner's re-run: flaky in every build.
        'tests/test_flaky.py': py(
          'import os',
          '',
          'import pytest',
          '',
          '',
          '@pytest.mark.fast',
          'def test_flaky():',
          '    marker = os.path.join(os.environ["TMPDIR"], "flaky-once")',
          '    if not os.path.exists(marker):',
          '        open(marker, "w").close()',
          '        assert "first" == "second"',
        ),
      },
      'mul broken, a flaky test',
    );
    const mulFailures = ['tests/test_mul.py::test_mul[2-3-6]', 'tests/test_mul.py::test_mul[4-0-0]'];
    const one = await harness.build(failing, first);
    assert.deepEqual(one.failedTests, mulFailures);
    assert.deepEqual(
      one.flakyTests.map((entry) => entry.nodeId),
      ['tests/test_flaky.py::test_flaky'],
    );

    // Seen once: testmon runs the failed tests again, although nothing they run changed.
    const second = await push({ 'calc/arith.py': arith(['return a + b'], ['return -(b - a)']) }, 'sub');
    const two = await harness.build(failing, second);
    assert.equal(two.testsRun, 3 + 2 + 1, "test_sub's cases, test_mul's failures, the flaky test");
    assert.deepEqual(two.failedTests, mulFailures);

    // Seen twice the same way: reported, not run. The flaky test (never failed in a verdict) runs again.
    const third = await push({ 'calc/arith.py': arith(['return a + b'], ['return a - b']) }, 'sub again');
    const three = await harness.build(failing, third);
    assert.equal(three.status, 'FAILED');
    assert.equal(three.testsRun, 3 + 1, "test_sub's cases and the flaky test");
    assert.deepEqual(three.failedTests, mulFailures);
    assert.deepEqual(
      three.flakyTests.map((entry) => entry.nodeId),
      ['tests/test_flaky.py::test_flaky'],
    );
    assert.ok(
      logged(`2 failed test(s) not run, their failures carried from ${second.slice(0, 12)}`),
      harness.lastLog.join('\n'),
    );
    const mulDetails = (report: BuildReport) =>
      report.failures.filter((entry) => mulFailures.includes(entry.nodeId));
    assert.deepEqual(mulDetails(three), mulDetails(two));
    assert.equal(mulDetails(three)[0]?.location, 'calc/mul.py:6');

    // A line added above the frames moves them: the tests run again, and say where they fail now.
    const fourth = await push({ 'calc/mul.py': brokenMul(['# moved']) }, 'a comment above mul');
    const four = await harness.build(failing, fourth);
    assert.equal(four.testsRun, 2 + 1, "test_mul's failures and the flaky test");
    assert.ok(!logged('not run, their failures carried'), harness.lastLog.join('\n'));
    assert.equal(mulDetails(four)[0]?.location, 'calc/mul.py:7');
    const fullFour = await harness.build(failing, fourth, { selectFullEvery: 1 });
    expectSame(four, fullFour);
    assert.deepEqual(mulDetails(four), mulDetails(fullFour));

    // The carried report is the one every test would give.
    const fullThree = await harness.build(failing, third, { selectFullEvery: 1 });
    expectSame(three, fullThree);
    assert.deepEqual(three.failures, fullThree.failures);
    assert.equal(fullThree.testsRun, 2 + 3 + 2 + 1, 'every test');
  });

  test('a record its own tests rewrote (forged failures and blocks) costs the next build nothing but its speed', async () => {
    const hostile = await harness.newRepo('forged-record');
    const push = (files: Record<string, string>, message: string) => commitTo(hostile, files, message);
    // As the run exits, after the runner's plugin wrote the lineage's record: failures whose frames name files
    // outside the tree (or no file at all), seen many times; blocks with checksums testmon cannot store.
    const conftest = py(
      'import atexit, json, os, pathlib',
      '',
      '',
      'def forge():',
      '    out = os.environ.get("CI_RUNNER_AFFECTED_OUT")',
      '    if not out:',
      '        return',
      '    if pathlib.Path("forge-mode.txt").exists():',
      '        pathlib.Path(out, "lines.json").write_text("{not json")',
      '        return',
      '    from testmon.process_code import bytes_to_string_and_fsha',
      '    fshas = [bytes_to_string_and_fsha(p.read_bytes())[1] for p in pathlib.Path("calc").glob("*.py")]',
      '    detail = {"kind": "failed", "message": "forged", "location": "", "traceback": "", "output": ""}',
      '    frames = {"/dev/zero": [1, "0" * 64], "tests/test_mul.py": [1, "0" * 64], "a\\u0000b": [1, "x"]}',
      '    failures = {node: {"detail": detail, "frames": frames, "seen": 9} for node in (',
      '        "tests/test_mul.py::test_mul[2-3-6]", "tests/test_mul.py::test_mul[4-0-0]")}',
      '    blocks = {fsha: [[1, 3, 2 ** 40, "x"], [2, None, 1, "y"]] for fsha in fshas}',
      '    pathlib.Path(out, "lines.json").write_text(json.dumps({"failures": failures, "blocks": blocks}))',
      '',
      '',
      'atexit.register(forge)',
    );
    const first = await push(
      { ...TREE, 'conftest.py': conftest, 'calc/mul.py': py('def mul(a, b):', '    return a * b + 1') },
      'mul broken; a conftest that forges the record',
    );
    const mulFailures = ['tests/test_mul.py::test_mul[2-3-6]', 'tests/test_mul.py::test_mul[4-0-0]'];
    assert.deepEqual((await harness.build(hostile, first)).failedTests, mulFailures);
    for (const [k, sub] of ['-(b - a)', 'a - b'].entries()) {
      const sha = await push({ 'calc/arith.py': arith(['return a + b'], [`return ${sub}`]) }, `sub ${k}`);
      const report = await harness.build(hostile, sha);
      assert.equal(report.status, 'FAILED', report.error);
      assert.deepEqual(report.failedTests, mulFailures, 'run, not carried, and never the forged details');
      assert.ok(!report.failures.some((entry) => entry.message === 'forged'));
      assert.ok(!logged('not run, their failures carried'), harness.lastLog.join('\n'));
      assert.ok(!logged('INTERNALERROR'), harness.lastLog.join('\n'));
      assert.ok(report.testsRun >= 2 + 3, "test_mul's failures and test_sub ran");
    }
    // A record that is not JSON at all: the next build runs every test, with the verdict a full run gives.
    await harness.build(hostile, await push({ 'forge-mode.txt': 'garbage' }, 'the record will not parse'));
    const last = await push({ 'calc/arith.py': arith(['return a + b'], ['return -(b - a)']) }, 'sub again');
    const report = await harness.build(hostile, last);
    assert.deepEqual(report.failedTests, mulFailures, report.error);
    assert.equal(report.testsRun, 7, 'every test');
    assert.ok(logged("the earlier build's record could not be used"), harness.lastLog.join('\n'));
  });

  test('SELECT_DEFAULT=affected applies to a repository that does not set select', async () => {
    const defaulted = await harness.newRepo('select-default');
    const pyproject = PYPROJECT.replace('select = "affected"\n', '');
    const first = await defaulted.commit({ ...TREE, 'pyproject.toml': pyproject }, 'first');
    defaulted.push('main');
    await harness.build(defaulted, first, { selectDefault: 'affected' });
    const second = await defaulted.commit(
      { 'calc/mul.py': MUL.replace('total = 0', 'total = 0 * a') },
      'mul',
    );
    defaulted.push('main');
    const report = await harness.build(defaulted, second, { selectDefault: 'affected' });
    assert.equal(report.testsRun, 2);
    assert.equal(report.testsTotal, 7);
    const optedOut = await defaulted.commit(
      { 'pyproject.toml': `${pyproject}select = "all"\n` },
      'the repository says all',
    );
    defaulted.push('main');
    assert.equal((await harness.build(defaulted, optedOut, { selectDefault: 'affected' })).testsRun, 7);
  });
});
