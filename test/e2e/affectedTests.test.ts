import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BuildReport } from '../../src/delivery/contracts.js';
import type { FixtureRepo } from '../support/fixtureRepo.js';
import { createPipelineHarness, type PipelineHarness } from '../support/pipelineHarness.js';

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

  const commit = async (files: Record<string, string>, message: string) => {
    const sha = await repo.commit(files, message);
    repo.push('main');
    return sha;
  };
  // The same commit built with every test (a full run's figures to compare with).
  const fullRun = async (sha: string) => harness.build(repo, sha, { selectFullEvery: 1 });
  const logged = (text: string) => harness.lastLog.some((line) => line.includes(text));
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
    assert.ok(logged('tests selected: 3 of 7'));
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

  test('a repository whose coverage measures branches runs every test, and the log says why', async () => {
    const branches = await harness.newRepo('branches');
    const pyproject = PYPROJECT.replace('source_pkgs = ["calc"]', 'source_pkgs = ["calc"]\nbranch = true');
    const first = await branches.commit({ ...TREE, 'pyproject.toml': pyproject }, 'branches');
    branches.push('main');
    assert.equal((await harness.build(branches, first)).testsSelected, 7);
    const second = await branches.commit(
      { 'calc/arith.py': arith(['return a + b'], ['return -(b - a)']) },
      'sub',
    );
    branches.push('main');
    const report = await harness.build(branches, second);
    assert.equal(report.status, 'PASSED', report.error);
    assert.equal(report.testsSelected, 7);
    assert.ok(
      logged("not possible here: the repository's coverage measures branches"),
      harness.lastLog.join('\n'),
    );
    const cache = join(process.env.CI_RUNNER_TEST_CACHE_DIR ?? '.cache/test', 'test-selection');
    assert.ok((await readdir(cache)).length >= 1, 'the affected repository has data in the cache');
  });
});
