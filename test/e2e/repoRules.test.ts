import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import type { BuildReport } from '../../src/delivery/contracts.js';
import type { Files } from '../support/fixtureRepo.js';
import { createPipelineHarness, type PipelineHarness } from '../support/pipelineHarness.js';

// A repository is judged by its own rules: the formatter it uses, the ruff/black versions it pins, and the test
// selection it has (the runner's `fast` mark only where the repository declares it).
const py = (...lines: string[]) => `${lines.join('\n')}\n`;

const runnerPin = async (tool: string) => {
  const pins = await readFile(new URL('../../python/requirements-tools.txt', import.meta.url), 'utf8');
  return new RegExp(`^${tool}==(\\S+)$`, 'm').exec(pins)?.[1] ?? '';
};

// What ruff format 0.15.9 accepts and black does not (black puts a blank line between a class body and `else:`),
// and a Markdown file whose Python block ruff 0.17 would reformat (0.15 does not read Markdown).
const RUFF_FORMATTED: Files = {
  'pyproject.toml': py(
    '[tool.ruff]',
    'line-length = 100',
    '',
    '[tool.ruff.format]',
    'quote-style = "double"',
    '',
    '[tool.pytest.ini_options]',
    'pythonpath = ["."]',
    '',
    '[tool.coverage.run]',
    'source = ["flags"]',
  ),
  '.pre-commit-config.yaml': py(
    'repos:',
    '  - repo: https://github.com/astral-sh/ruff-pre-commit',
    '    rev: c60c980e561ed3e73101667fe8365c609d19a438  # frozen: v0.15.9',
    '    hooks:',
    '      - id: ruff-check',
    '      - id: ruff-format',
  ),
  'flags/__init__.py': py(
    'import sys',
    '',
    'if sys.version_info >= (3, 11):',
    '',
    '    class Flag:',
    '        value = 1',
    'else:',
    '',
    '    class Flag:',
    '        value = 0',
  ),
  'README.md': py('# flags', '', '```python', 'x=1', '```'),
  'tests/test_flags.py': py(
    'from flags import Flag',
    '',
    '',
    'def test_flag():',
    '    assert Flag.value == 1',
  ),
};

describe('a repository is judged by its own rules', () => {
  let harness: PipelineHarness;

  before(async () => {
    harness = await createPipelineHarness();
  });

  after(async () => {
    await harness.close();
  });

  const build = async (name: string, files: Files): Promise<BuildReport> => {
    const repo = await harness.newRepo(name);
    const sha = await repo.commit(files, name);
    repo.push('main');
    return harness.build(repo, sha);
  };
  const logged = (text: string) => harness.lastLog.some((line) => line.includes(text));
  const stage = (report: BuildReport, name: string) =>
    report.stages.find((entry) => entry.name === name)?.summary ?? '';

  test("ruff format at the pre-commit pin, no `fast` mark: PASSED, the repository's default selection ran", async () => {
    const report = await build('ruff-formatted', RUFF_FORMATTED);
    assert.equal(report.status, 'PASSED', `${report.error} ${report.lintErrors}`);
    assert.deepEqual(report.lintErrors, []);
    assert.equal(report.testsRun, 1);
    assert.equal(stage(report, 'lint'), 'lint clean (ruff 0.15.9, ruff format 0.15.9)');
    assert.match(
      stage(report, 'test'),
      /mark `fast` is not declared by the repository: ran its default selection/,
    );
    assert.ok(
      logged('formatter: ruff format 0.15.9 (pre-commit hook ruff-format; version: .pre-commit-config.yaml'),
      harness.lastLog.join('\n'),
    );
    assert.ok(logged('# frozen: v0.15.9'));
  });

  test('the same repository with one mis-formatted file: FAILED with exactly that file', async () => {
    const report = await build('ruff-formatted-broken', { ...RUFF_FORMATTED, 'flags/ugly.py': 'x=1\n' });
    assert.equal(report.status, 'FAILED');
    assert.deepEqual(report.lintErrors, ['flags/ugly.py: would reformat']);
    assert.equal(report.testsRun, 1);
  });

  test("without the pin, the runner's own ruff: it formats Markdown and checks more rules", async () => {
    const { '.pre-commit-config.yaml': _, ...unpinned } = RUFF_FORMATTED;
    const report = await build('ruff-unpinned', unpinned);
    const ruff = await runnerPin('ruff');
    assert.equal(report.status, 'FAILED');
    // ruff 0.17 also checks more by default than the 0.15.9 the repository pins (a version block it calls outdated).
    assert.deepEqual(report.lintErrors, [
      'README.md: would reformat',
      'flags/__init__.py:3:4: UP036 Version block is outdated for minimum Python version',
    ]);
    assert.equal(stage(report, 'lint'), `2 lint finding(s) (ruff ${ruff}, ruff format ${ruff})`);
    assert.ok(
      logged(
        `formatter: ruff format ${ruff} ([tool.ruff.format] in pyproject.toml; version: the runner's own)`,
      ),
    );
  });

  test('a repository that declares `fast` runs only its fast tests', async () => {
    const report = await build('declares-fast', {
      'pyproject.toml': py('[tool.pytest.ini_options]', 'markers = ["fast: quick tests"]'),
      'tests/test_some.py': py(
        'import pytest',
        '',
        '',
        '@pytest.mark.fast',
        'def test_quick():',
        '    assert True',
        '',
        '',
        'def test_slow():',
        '    assert False',
      ),
    });
    assert.equal(report.status, 'PASSED', `${report.error} ${report.failedTests}`);
    assert.equal(report.testsRun, 1);
    assert.doesNotMatch(stage(report, 'test'), /not declared/);
    assert.ok(logged('tests selected by -m "fast"'));
  });

  test("[tool.black] and no pins: the runner's black and ruff; black's findings", async () => {
    const report = await build('black-project', {
      'pyproject.toml': py('[tool.black]', 'line-length = 100'),
      'pkg/__init__.py': py('VALUE = 1'),
      'pkg/ugly.py': 'x=1\n',
      'tests/test_pkg.py': py('def test_value():', '    assert 1 == 1'),
    });
    const [ruff, black] = [await runnerPin('ruff'), await runnerPin('black')];
    assert.equal(report.status, 'FAILED');
    assert.deepEqual(report.lintErrors, ['pkg/ugly.py: would reformat']);
    assert.equal(stage(report, 'lint'), `1 lint finding(s) (ruff ${ruff}, black ${black})`);
    assert.ok(
      logged(`formatter: black ${black} ([tool.black] in pyproject.toml; version: the runner's own)`),
    );
    // No ruff configuration: ruff checks its classic rules, not every rule its version enables by default.
    assert.ok(logged('the repository does not configure ruff'));
  });

  test('formatter = "none" skips formatting; ruff check still runs', async () => {
    const report = await build('no-formatter', {
      'pyproject.toml': py('[tool.ci-runner]', 'formatter = "none"'),
      'pkg/__init__.py': 'import os\nx=1\n',
      'tests/test_pkg.py': py('def test_value():', '    assert 1 == 1'),
    });
    assert.equal(report.status, 'FAILED');
    assert.deepEqual(report.lintErrors, ['pkg/__init__.py:1:8: F401 `os` imported but unused']);
    assert.ok(logged('formatter: none ([tool.ci-runner] formatter)'));
  });

  test('a pin to a version that does not exist fails the build, naming the pin and its file', async () => {
    const report = await build('missing-pin', {
      'pyproject.toml': py('[dependency-groups]', 'lint = ["ruff==0.99.99"]'),
      'tests/test_ok.py': py('def test_ok():', '    assert True'),
    });
    assert.equal(report.status, 'FAILED');
    const message =
      'ruff==0.99.99 (pyproject.toml [dependency-groups] lint (ruff==0.99.99)) cannot be used: ' +
      'no wheel of ruff==0.99.99 on the package index';
    assert.deepEqual(report.lintErrors, [message]);
    assert.equal(report.error, `lint: ${message}`);
    assert.equal(report.testsRun, 1);
  });

  test('a pinned black runs at its version, installed once and reused', async () => {
    const files = {
      '.pre-commit-config.yaml': py(
        'repos:',
        '  - repo: https://github.com/psf/black-pre-commit-mirror',
        '    rev: 25.9.0',
        '    hooks:',
        '      - id: black',
      ),
      'pkg/__init__.py': py('VALUE = 1'),
      'tests/test_pkg.py': py('def test_value():', '    assert 1 == 1'),
    };
    const first = await build('black-pinned', files);
    assert.equal(first.status, 'PASSED', `${first.error} ${first.lintErrors}`);
    assert.match(stage(first, 'lint'), /, black 25\.9\.0\)$/);
    const second = await build('black-pinned-again', { ...files, 'pkg/ugly.py': 'x=1\n' });
    assert.deepEqual(second.lintErrors, ['pkg/ugly.py: would reformat']);
    assert.ok(
      logged(
        'formatter: black 25.9.0 (pre-commit hook black; version: .pre-commit-config.yaml (rev 25.9.0))',
      ),
    );
  });
});
