import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../src/ops/config.js';
import type { FixtureRepo } from '../support/fixtureRepo.js';
import { createPipelineHarness, type PipelineHarness } from '../support/pipelineHarness.js';
import { cleanProject } from '../support/pythonProject.js';
import { readArtefact } from '../support/readArtefact.js';

const py = (...lines: string[]) => `${lines.join('\n')}\n`;

describe('build stages on real repositories, Python and tools', () => {
  let harness: PipelineHarness;

  before(async () => {
    harness = await createPipelineHarness();
  });

  after(async () => {
    await harness.close();
  });

  const project = async (name: string, files: Record<string, string>): Promise<[FixtureRepo, string]> => {
    const repo = await harness.newRepo(name);
    const sha = await repo.commit({ ...cleanProject(), ...files }, name);
    repo.push('main');
    return [repo, sha];
  };

  test('failed_tests holds exact node ids: parametrised, class methods, errors in fixtures', async () => {
    const [repo, sha] = await project('ids', {
      'tests/test_ids.py': py(
        'import pytest',
        '',
        '',
        '@pytest.fixture',
        'def broken():',
        '    raise RuntimeError("fixture")',
        '',
        '',
        '@pytest.mark.fast',
        '@pytest.mark.parametrize("n", [1, 2, 3])',
        'def test_odd(n):',
        '    assert n % 2 == 1',
        '',
        '',
        '@pytest.mark.fast',
        'class TestGroup:',
        '    def test_ok(self):',
        '        assert True',
        '',
        '    def test_bad(self):',
        '        assert 1 == 2',
        '',
        '',
        '@pytest.mark.fast',
        'def test_uses_broken(broken):',
        '    assert broken',
      ),
    });
    const report = await harness.build(repo, sha);
    assert.equal(report.status, 'FAILED');
    assert.deepEqual([...report.failedTests].sort(), [
      'tests/test_ids.py::TestGroup::test_bad',
      'tests/test_ids.py::test_odd[2]',
      'tests/test_ids.py::test_uses_broken',
    ]);
    assert.equal(report.testsRun, 8);
  });

  test('a test file that cannot be collected is named by its path', async () => {
    const [repo, sha] = await project('collect', {
      'tests/test_unimportable.py': py('import module_that_does_not_exist  # noqa: F401'),
    });
    const report = await harness.build(repo, sha);
    assert.equal(report.status, 'FAILED');
    assert.deepEqual(report.failedTests, ['tests/test_unimportable.py']);
  });

  test('no tests collected (pytest exit 5) is not a failure: PASSED with zero tests run', async () => {
    const [repo, sha] = await project('none', {
      // Declared by the repository, carried by no test.
      'pyproject.toml': py(
        '[tool.pytest.ini_options]',
        'pythonpath = ["."]',
        'markers = ["nothing_has_this: no test carries it"]',
        '',
        '[tool.ci-runner]',
        'pytest-mark = "nothing_has_this"',
      ),
    });
    const report = await harness.build(repo, sha);
    assert.equal(report.status, 'PASSED', report.error);
    assert.equal(report.testsRun, 0);
    assert.deepEqual(report.failedTests, []);
  });

  test("the repository's own -m in addopts narrows the selection together with the runner's mark", async () => {
    const [repo, sha] = await project('own-marks', {
      'pyproject.toml': py(
        '[tool.pytest.ini_options]',
        'pythonpath = ["."]',
        'markers = ["fast: quick", "stress: long"]',
        `addopts = "-m 'not stress'"`,
      ),
      'tests/test_calc.py': py(
        'import pytest',
        '',
        '',
        '@pytest.mark.fast',
        'def test_quick():',
        '    assert True',
        '',
        '',
        '@pytest.mark.fast',
        '@pytest.mark.stress',
        'def test_quick_but_stress():',
        '    assert False',
        '',
        '',
        'def test_unmarked():',
        '    assert False',
      ),
    });
    const report = await harness.build(repo, sha);
    assert.equal(report.status, 'PASSED', `${report.error} ${report.failedTests}`);
    assert.equal(report.testsRun, 1, 'only the fast test that is not a stress test');
    assert.ok(harness.lastLog.some((line) => line.includes('-m "(not stress) and (fast)"')));
  });

  test('a test function -m deselects entirely makes no items; parameters and marks that select are kept', async () => {
    const options = (addopts: string) =>
      py(
        '[tool.pytest.ini_options]',
        'pythonpath = ["."]',
        'markers = ["fast: quick", "stress: long", "chosen: run anyway"]',
        `addopts = "${addopts}"`,
      );
    const tests = py(
      'import pytest',
      '',
      '',
      '@pytest.mark.fast',
      'def test_quick():',
      '    assert True',
      '',
      '',
      '@pytest.mark.fast',
      '@pytest.mark.stress',
      '@pytest.mark.parametrize("k", range(500))',
      'def test_many(k):',
      '    assert False',
      '',
      '',
      '@pytest.mark.fast',
      '@pytest.mark.parametrize("n", [1, pytest.param(2, marks=pytest.mark.stress)])',
      'def test_one_param_stress(n):',
      '    assert n == 1',
      '',
      '',
      '@pytest.mark.fast',
      '@pytest.mark.stress',
      '@pytest.mark.parametrize("n", [pytest.param(1, marks=pytest.mark.chosen), 2])',
      'def test_rescued(n):',
      '    assert n == 1',
      '',
      '',
      '@pytest.mark.stress',
      'class TestStress:',
      '    @pytest.mark.fast',
      '    def test_in_class(self):',
      '        assert False',
    );
    const [repo, sha] = await project('unmade', {
      'pyproject.toml': options("-m 'not stress'"),
      'tests/test_calc.py': tests,
    });
    const report = await harness.build(repo, sha);
    assert.equal(report.status, 'PASSED', `${report.error} ${report.failedTests}`);
    assert.equal(report.testsRun, 2, 'test_quick, test_one_param_stress[1]');
    const log = harness.lastLog.join('\n');
    assert.ok(log.includes('3 test function(s) made no items: -m deselects every one they could make'), log);

    // A mark a parameter may add can select it: then every function makes its items, and pytest deselects.
    const [rescue, rescueSha] = await project('unmade-rescued', {
      'pyproject.toml': options("-m 'not stress or chosen'"),
      'tests/test_calc.py': tests,
    });
    const rescued = await harness.build(rescue, rescueSha);
    assert.equal(rescued.status, 'PASSED', `${rescued.error} ${rescued.failedTests}`);
    assert.equal(rescued.testsRun, 3, 'test_quick, test_one_param_stress[1], test_rescued[n0]');
    assert.ok(!harness.lastLog.join('\n').includes('made no items'));
  });

  test("the bytecode of a repository's sources is kept for its next build, never through a link", async (t) => {
    const outside = await mkdtemp(join(tmpdir(), 'ci-runner-pycache-'));
    t.after(() => rm(outside, { recursive: true, force: true }));
    const repo = await harness.newRepo('bytecode');
    const calc = (body: string) => py('def add(a, b):', `    return ${body}`);
    const tests = py(
      'import pytest',
      '',
      'from calc import add',
      '',
      '',
      '@pytest.mark.fast',
      'def test_add():',
      '    assert add(2, 3) == 5',
    );
    const files = {
      ...cleanProject(),
      'pyproject.toml': py('[tool.pytest.ini_options]', 'pythonpath = ["."]', 'markers = ["fast: quick"]'),
      'calc/__init__.py': calc('a + b'),
      'tests/test_calc.py': tests,
      'linked/__init__.py': py('VALUE = 1'),
      'tests/test_linked.py': py(
        'import pytest',
        '',
        'import linked',
        '',
        '',
        '@pytest.mark.fast',
        'def test_linked():',
        '    assert linked.VALUE == 1',
      ),
    };
    // A __pycache__ the commit holds as a link to a directory of the host's.
    const first = await repo.commit(files, 'first', [], [['linked/__pycache__', outside]]);
    repo.push('main');
    const one = await harness.build(repo, first);
    assert.equal(one.status, 'PASSED', one.error);
    const second = await repo.commit({ 'calc/__init__.py': calc('b + a') }, 'second');
    repo.push('main');
    const two = await harness.build(repo, second);
    assert.equal(two.status, 'PASSED', two.error);
    assert.equal(two.testsRun, 2);
    const log = harness.lastLog.join('\n');
    // The test files (pytest's rewritten bytecode) came back; calc/__init__.py changed and was compiled afresh.
    assert.match(log, /\d+ bytecode file\(s\) from the branch's earlier builds/, log);
    assert.deepEqual(await readdir(outside), [], 'nothing was written through the link');
    // BYTECODE_CACHE=off: nothing put back.
    const again = await harness.build(repo, second, { bytecodeCache: false });
    assert.equal(again.status, 'PASSED', again.error);
    assert.ok(!harness.lastLog.some((line) => line.includes('bytecode file(s)')), harness.lastLog.join('\n'));
    // A wrong result from a stale .pyc would fail here: the changed module is the one the test imports.
    const third = await repo.commit({ 'calc/__init__.py': calc('a - b') }, 'third');
    repo.push('main');
    const three = await harness.build(repo, third);
    assert.equal(three.status, 'FAILED');
    assert.deepEqual(three.failedTests, ['tests/test_calc.py::test_add']);
  });

  test('builds run on exactly the configured PYTHON, and the report and job log name its version', async () => {
    const [repo, sha] = await project('interpreter', {
      'tests/test_version.py': py(
        'import os',
        'import sys',
        '',
        'import pytest',
        '',
        '',
        '@pytest.mark.fast',
        'def test_record_version():',
        '    path = os.path.join(os.environ["CI_RUNNER_KEEP"], "VERSION-SEEN.txt")',
        '    with open(path, "w") as handle:',
        '        handle.write(sys.version.split()[0])',
      ),
    });
    const report = await harness.build(repo, sha);
    assert.equal(report.status, 'PASSED', report.error);
    const configured = execFileSync('python3', ['-c', 'import sys; print(sys.version.split()[0])'], {
      encoding: 'utf8',
    }).trim();
    const entries = await readArtefact(fileURLToPath(report.artefactUrl));
    assert.equal(entries.get('outputs/VERSION-SEEN.txt')?.content, configured, 'the tests ran on PYTHON');
    assert.equal(report.pythonVersion, configured);
    assert.ok(harness.lastLog.some((line) => line.startsWith(`python ${configured} (`)));
  });

  test('test dependencies declared as a PEP 735 dependency group are installed', async () => {
    const [repo, sha] = await project('groups', {
      'pyproject.toml': py(
        '[tool.pytest.ini_options]',
        'pythonpath = ["."]',
        'markers = ["fast: quick"]',
        '',
        '[dependency-groups]',
        'test = ["six==1.17.0"]',
        'docs = ["this-package-does-not-exist-anywhere==0"]',
      ),
      'tests/test_six.py': py(
        'import pytest',
        'import six',
        '',
        '',
        '@pytest.mark.fast',
        'def test_six_from_the_group():',
        '    assert six.ensure_str(b"x") == "x"',
      ),
    });
    const report = await harness.build(repo, sha);
    assert.equal(report.status, 'PASSED', `${report.error} ${report.failedTests} ${report.lintErrors}`);
    assert.equal(report.testsRun, 3);
  });

  test('a test run over its time limit is killed with everything it started: FAILED with a timeout entry', async () => {
    const marker = String(4000 + Math.floor(Math.random() * 900));
    const [repo, sha] = await project('slow', {
      'pyproject.toml': py(
        '[tool.pytest.ini_options]',
        'markers = ["fast: quick tests"]',
        '',
        '[tool.ci-runner]',
        'test-timeout-sec = 3',
      ),
      'tests/test_slow.py': py(
        'import subprocess',
        'import time',
        '',
        'import pytest',
        '',
        '',
        '@pytest.mark.fast',
        'def test_fails_first():',
        '    assert 1 == 2',
        '',
        '',
        '@pytest.mark.fast',
        'def test_hangs():',
        `    subprocess.Popen(["sleep", "${marker}"])`,
        '    time.sleep(600)',
      ),
    });
    const report = await harness.build(repo, sha);
    assert.equal(report.status, 'FAILED');
    assert.deepEqual(report.failedTests, [
      'tests/test_slow.py::test_fails_first',
      'TIMEOUT: tests/test_slow.py::test_hangs was running when the tests exceeded their time limit of 3000 ms',
    ]);
    const left = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
      .split('\n')
      .filter((line) => line.trim() === `sleep ${marker}`);
    assert.deepEqual(left, [], 'nothing the tests started is still running');
  });

  test("the code under test sees none of the runner's variables", async () => {
    process.env.CI_RUNNER_CANARY = 'must-not-leak';
    const [repo, sha] = await project('env', {
      'tests/test_env.py': py(
        'import os',
        '',
        'import pytest',
        '',
        '',
        '@pytest.mark.fast',
        'def test_clean_environment():',
        '    names = ("REDIS_URL", "KAFKA_BROKERS", "CI_RUNNER_CANARY")',
        '    leaked = [k for k in os.environ if k in names]',
        '    assert leaked == []',
      ),
    });
    try {
      const report = await harness.build(repo, sha);
      assert.equal(report.status, 'PASSED', `${report.error} ${report.failedTests}`);
    } finally {
      delete process.env.CI_RUNNER_CANARY;
    }
  });

  test('[tool.ci-runner] is validated: an unknown key or a wrong type fails the build naming it', async () => {
    const [repo, unknown] = await project('settings', {
      'pyproject.toml': py('[tool.ci-runner]', 'tset-timeout-sec = 3'),
    });
    const first = await harness.build(repo, unknown);
    assert.equal(first.status, 'FAILED');
    assert.match(first.error, /^settings: \[tool\.ci-runner\] tset-timeout-sec: unknown key/);

    const wrongType = await repo.commit(
      { 'pyproject.toml': py('[tool.ci-runner]', 'lint = "no"') },
      'wrong type',
    );
    repo.push('main');
    const second = await harness.build(repo, wrongType);
    assert.equal(second.status, 'FAILED');
    assert.match(second.error, /\[tool\.ci-runner\] lint: must be true or false/);

    const reserved = await repo.commit(
      { 'pyproject.toml': py('[tool.ci-runner]', 'pytest-args = ["--junitxml=/tmp/x"]') },
      'r',
    );
    repo.push('main');
    assert.match(
      (await harness.build(repo, reserved)).error,
      /pytest-args: "--junitxml=\/tmp\/x" is set by the runner/,
    );
  });

  test('a pyproject.toml that is not valid TOML: FAILED naming the problem', async () => {
    const [repo, sha] = await project('badtoml', {
      'pyproject.toml': '[tool.pytest.ini_options\nmarkers = 1\n',
    });
    const report = await harness.build(repo, sha);
    assert.equal(report.status, 'FAILED');
    assert.match(report.error, /^settings: pyproject\.toml is not valid TOML/);
  });

  test('[tool.ci-runner] may turn lint off and add pytest arguments', async () => {
    const [repo, sha] = await project('nolint', {
      'pyproject.toml': py(
        '[tool.pytest.ini_options]',
        'pythonpath = ["."]',
        'markers = ["fast: quick tests"]',
        '',
        '[tool.ci-runner]',
        'lint = false',
        'pytest-args = ["-k", "add"]',
      ),
      'calc/ugly.py': 'import os\nx=1\n',
    });
    const report = await harness.build(repo, sha);
    assert.equal(report.status, 'PASSED', report.error);
    assert.deepEqual(report.lintErrors, []);
    assert.equal(report.testsRun, 1, '-k add selects one test');
    assert.ok(!report.stages.some((stage) => stage.name === 'lint'));

    // The same pyproject.toml again: its settings come from the cache, without starting Python.
    const same = await repo.commit({ 'calc/other.py': 'y = 2\n' }, 'code only');
    repo.push('main');
    const again = await harness.build(repo, same);
    assert.ok(harness.lastLog.some((line) => line.includes('this pyproject.toml was read before')));
    assert.ok(!again.stages.some((stage) => stage.name === 'lint'));
    assert.equal(again.testsRun, 1);

    // A changed pyproject.toml gets its own answer: lint is back on and finds calc/ugly.py.
    const changed = await repo.commit(
      {
        'pyproject.toml': py(
          '[tool.pytest.ini_options]',
          'pythonpath = ["."]',
          'markers = ["fast: quick tests"]',
        ),
      },
      'settings removed',
    );
    repo.push('main');
    const relinted = await harness.build(repo, changed);
    assert.equal(relinted.status, 'FAILED');
    assert.ok(
      relinted.lintErrors.some((finding) => finding.startsWith('calc/ugly.py')),
      `${relinted.lintErrors}`,
    );
    assert.equal(relinted.testsRun, 2);
  });

  test('dependencies: installed into the build, reused from the cache when the declarations are unchanged', async () => {
    const requirements = 'six==1.16.0\n';
    const usesSix = py(
      'import pytest',
      'import six',
      '',
      '',
      '@pytest.mark.fast',
      'def test_six():',
      '    assert six.text_type is str',
    );
    const marker = `# ${Date.now()}\n`;
    const [repo, sha] = await project('deps', {
      'requirements.txt': requirements + marker,
      'tests/test_six.py': usesSix,
    });
    const cold = await harness.build(repo, sha);
    assert.equal(cold.status, 'PASSED', `${cold.error} ${cold.lintErrors} ${cold.failedTests}`);
    assert.match(stage(cold, 'install'), /resolved and cached/);

    const next = await repo.commit({ 'calc/more.py': py('def mul(a, b):', '    return a * b') }, 'code only');
    repo.push('main');
    const warm = await harness.build(repo, next);
    assert.equal(warm.status, 'PASSED', warm.error);
    assert.match(stage(warm, 'install'), /from cache/);

    const changed = await repo.commit(
      { 'requirements.txt': `${requirements}${marker}# changed\n` },
      'declarations',
    );
    repo.push('main');
    assert.match(stage(await harness.build(repo, changed), 'install'), /resolved and cached/);
  });

  test('dependencies that cannot be installed as declared: FAILED, and no cache entry is written', async () => {
    const envs = resolve(process.env.CI_RUNNER_TEST_CACHE_DIR ?? '.cache/test', 'envs');
    const before = await readdir(envs).catch(() => []);
    const missing = `ci-runner-no-such-package-${Date.now()}`;
    const [repo, sha] = await project('baddeps', { 'requirements.txt': `${missing}==1.0\n` });
    const report = await harness.build(repo, sha);
    assert.equal(report.status, 'FAILED');
    // The requirement named, and uv's own words quoted.
    assert.match(
      report.error,
      new RegExp(
        `^install: dependencies could not be installed as declared: \`${missing}\` could not be resolved\n`,
      ),
    );
    assert.match(report.error, /was not found in the package registry/);
    assert.deepEqual(await readdir(envs).catch(() => []), before);
  });

  test('an installable project with a src layout and a test extra is installed editable', async () => {
    const [repo, sha] = await project('srclayout', {
      'pyproject.toml': py(
        '[build-system]',
        'requires = ["setuptools>=61"]',
        'build-backend = "setuptools.build_meta"',
        '',
        '[project]',
        'name = "srclayout"',
        'version = "0.1.0"',
        '',
        '[project.optional-dependencies]',
        'test = ["six==1.16.0"]',
        '',
        '[project.scripts]',
        'greet = "srclayout:main"',
        '',
        '[tool.pytest.ini_options]',
        'markers = ["fast: quick tests"]',
      ),
      'src/srclayout/__init__.py': py(
        'def greet():',
        '    return "hi"',
        '',
        '',
        'def main():',
        '    print(greet())',
      ),
      'tests/test_greet.py': py(
        'import importlib.metadata',
        'import os',
        'import subprocess',
        'import sys',
        '',
        'import pytest',
        'import six  # noqa: F401',
        '',
        'from srclayout import greet',
        '',
        '',
        '@pytest.mark.fast',
        'def test_greet():',
        '    assert greet() == "hi"',
        '',
        '',
        '@pytest.mark.fast',
        'def test_installed():',
        '    assert importlib.metadata.version("srclayout") == "0.1.0"',
        '    out = subprocess.run(["greet"], capture_output=True, text=True, check=True).stdout',
        '    assert out.strip() == greet()',
        '',
        '',
        '@pytest.mark.fast',
        'def test_environment_is_read_only():',
        '    sites = [p for p in sys.path if p.startswith(sys.prefix)]',
        '    site = next(p for p in sites if p.endswith("site-packages"))',
        '    with pytest.raises(OSError), open(os.path.join(site, "hostile.pth"), "w") as out:',
        '        out.write("import os; os._exit(3)\\n")',
        '    assert not os.path.exists(os.path.join(site, "hostile.pth"))',
      ),
    });
    const report = await harness.build(repo, sha);
    assert.equal(report.status, 'PASSED', `${report.error} ${report.failedTests}`);
    assert.equal(report.testsRun, 5);

    // Later builds with the same declarations bind the environment the runner made from the first one: no venv
    // and no install of their own, the project importable from their own checkout, its metadata and scripts there.
    const changed = await repo.commit(
      {
        'src/srclayout/__init__.py': py(
          'def greet():',
          '    return "hello"',
          '',
          '',
          'def main():',
          '    print(greet())',
        ),
      },
      'v2',
    );
    repo.push('main');
    const warm = await harness.build(repo, changed);
    assert.match(stage(warm, 'install'), /from cache \(shared, read-only\)/);
    assert.equal(warm.status, 'FAILED', 'the new source is what gets tested, not a cached copy');
    assert.deepEqual(warm.failedTests, ['tests/test_greet.py::test_greet']);
    assert.equal(warm.testsRun, 5);
  });

  test('test-workers runs pytest-xdist: the same failed tests, count and line coverage as one process', async () => {
    const files = {
      'calc/branches.py': py(
        'def classify(n):',
        '    if n < 0:',
        '        return "negative"',
        '    if n == 0:',
        '        return "zero"',
        '    return "positive"',
        '',
        '',
        'def never_called():',
        '    return 1',
      ),
      'tests/test_many.py': py(
        'import pytest',
        '',
        'from calc.branches import classify',
        '',
        '',
        '@pytest.mark.fast',
        '@pytest.mark.parametrize("n", range(-20, 20))',
        'def test_classify(n):',
        '    assert classify(n) in ("negative", "zero", "positive")',
        '',
        '',
        '@pytest.mark.fast',
        '@pytest.mark.parametrize("n", [3, 4])',
        'def test_odd(n):',
        '    assert n % 2 == 1',
        '',
        '',
        '@pytest.mark.fast',
        'class TestZero:',
        '    def test_zero(self):',
        '        assert classify(0) == "zero"',
        '',
        '    def test_wrong(self):',
        '        assert classify(1) == "zero"',
      ),
    };
    const serialProject = (workers: string) =>
      py(
        '[tool.pytest.ini_options]',
        'pythonpath = ["."]',
        'markers = ["fast: quick tests", "slow: long tests"]',
        '',
        '[tool.coverage.run]',
        'source = ["calc"]',
        ...(workers ? ['', '[tool.ci-runner]', `test-workers = ${workers}`] : []),
      );
    const [serialRepo, serialSha] = await project('serial', {
      ...files,
      'pyproject.toml': serialProject(''),
    });
    const serial = await harness.build(serialRepo, serialSha);
    const [parallelRepo, parallelSha] = await project('xdist', {
      ...files,
      'pyproject.toml': serialProject('2'),
    });
    const parallel = await harness.build(parallelRepo, parallelSha);
    assert.ok(
      harness.lastLog.some((line) => line.includes('2 xdist workers')),
      'the tests ran in two workers',
    );
    assert.equal(serial.status, 'FAILED');
    assert.deepEqual([...parallel.failedTests].sort(), [
      'tests/test_many.py::TestZero::test_wrong',
      'tests/test_many.py::test_odd[4]',
    ]);
    assert.deepEqual([...parallel.failedTests].sort(), [...serial.failedTests].sort());
    assert.equal(parallel.testsRun, serial.testsRun);
    assert.equal(parallel.testsRun, 46);
    assert.equal(parallel.lineCoverage, serial.lineCoverage);
    assert.ok(serial.lineCoverage > 0 && serial.lineCoverage < 100, `${serial.lineCoverage}`);
  });

  test("lint reuses the repository's caches and black's verdicts; a file changed in place (same size) is linted again", async () => {
    const clean = { 'calc/extra.py': 'x = [1, 2]\n', 'calc/names.py': py('import os', '', 'print(os)') };
    const [repo, first] = await project('lintcache', clean);
    const cold = await harness.build(repo, first);
    assert.equal(cold.status, 'PASSED', `${cold.error} ${cold.lintErrors}`);
    assert.ok(harness.lastLog.some((line) => line.includes('lint caches: none yet')));

    // One character each, sizes kept: the cached verdicts for these paths must not be served.
    const dirty = { 'calc/extra.py': 'x = [1 ,2]\n', 'calc/names.py': py('import os', '', 'print(xs)') };
    const second = await repo.commit(dirty, 'same sizes, new content');
    repo.push('main');
    const warm = await harness.build(repo, second);
    assert.ok(
      harness.lastLog.some((line) => line.includes("lint caches: the repository's, from its previous build")),
    );
    assert.equal(warm.status, 'FAILED');
    assert.deepEqual([...warm.lintErrors].sort(), [
      'calc/extra.py: would reformat',
      'calc/names.py:1:8: F401 `os` imported but unused',
      'calc/names.py:3:7: F821 Undefined name `xs`',
    ]);

    // extra.py unchanged: black's verdict for it is remembered, not computed again, and still reported.
    const fourth = await repo.commit({ 'calc/names.py': clean['calc/names.py'] }, 'names fixed');
    repo.push('main');
    const remembered = await harness.build(repo, fourth);
    assert.deepEqual(remembered.lintErrors, ['calc/extra.py: would reformat']);
    assert.ok(
      harness.lastLog.some((line) =>
        line.includes('lint: 1 file(s) black would reformat, unchanged since an earlier build'),
      ),
      harness.lastLog.join('\n'),
    );

    // Back to the first content (same size as the remembered one): black's remembered verdict must not be served.
    const third = await repo.commit(clean, 'back to the first content');
    repo.push('main');
    const back = await harness.build(repo, third);
    assert.equal(back.status, 'PASSED', `${back.error} ${back.lintErrors}`);
    assert.ok(!harness.lastLog.some((line) => line.includes('black would reformat, unchanged')));
  });

  test('the artefact holds the tree and every report; line coverage is covered lines over statements', async () => {
    const [repo, sha] = await project('artefact', {});
    const report = await harness.build(repo, sha);
    const entries = await readArtefact(fileURLToPath(report.artefactUrl));
    for (const name of [
      'junit.xml',
      'coverage.json',
      'ruff.json',
      'build.log',
      'test.log',
      'install.log',
      'lint.log',
    ]) {
      assert.ok(entries.has(`reports/${name}`), `reports/${name}`);
    }
    const totals = JSON.parse(entries.get('reports/coverage.json')?.content ?? '{}').totals;
    assert.equal(report.lineCoverage, (totals.covered_lines / totals.num_statements) * 100);
    assert.ok(harness.lastLog.some((line) => line.startsWith('--- test output ---')));
  });

  test('an artefact over the size cap: FAILED with a clear error and no file left behind', async () => {
    const [repo, sha] = await project('big', {
      'data.txt': randomBytes(200_000).toString('base64'),
    });
    const report = await harness.build(repo, sha, { artefactMaxBytes: 50_000 });
    assert.equal(report.status, 'FAILED');
    assert.match(report.error, /^artefact: artefact exceeds the 50000-byte limit/);
    assert.equal(report.artefactUrl, '');
    const left = await readdir(join(harness.root, 'artefacts')).catch(() => []);
    assert.ok(!left.some((name) => name.startsWith(sha)), `nothing left: ${left}`);
  });

  test('the artefact has a time limit of its own (ARTEFACT_TIMEOUT_SEC): over it, FAILED and no file left', async () => {
    const [repo, sha] = await project('slow-artefact', {
      'data.txt': randomBytes(2_000_000).toString('base64'),
    });
    const limits = { ...loadConfig({}, process.cwd(), []).limits, artefactMs: 1 };
    const report = await harness.build(repo, sha, { limits });
    assert.equal(report.status, 'FAILED');
    assert.match(report.error, /^artefact: the artefact exceeded 1 ms/);
    assert.equal(report.stages.find((s) => s.name === 'artefact')?.outcome, 'timedOut');
    assert.equal(report.artefactUrl, '');
    const left = await readdir(join(harness.root, 'artefacts')).catch(() => []);
    assert.ok(!left.some((name) => name.startsWith(sha)), `nothing left: ${left}`);
  });
});

function stage(report: { stages: Array<{ name: string; summary: string }> }, name: string): string {
  return report.stages.find((s) => s.name === name)?.summary ?? '(stage missing)';
}
