import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createPipelineHarness, type PipelineHarness } from '../support/pipelineHarness.js';

// A real, well-known project with its own test suite, fetched from PyPI as an sdist with pip at test time.
const PROJECT = 'toolz==1.2.0';
// Selects every test, as the direct run without -m does (no toolz test is marked `network`).
const MARK = 'not network';
const INJECTED_TEST = `import pytest


@pytest.mark.parametrize("n", [1, 2])
def test_injected(n):
    assert n == 1


class TestInjected:
    def test_method(self):
        assert [] == [0]
`;

function run(command: string, args: string[], cwd: string): string {
  try {
    return execFileSync(command, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    return String((error as { stdout?: string }).stdout ?? '');
  }
}

/** pytest and coverage run by hand, in a plain venv, on the same tree: the oracle the report must match. */
function runDirectly(tree: string, venv: string): { failed: string[]; lineCoverage: number } {
  const python = join(venv, 'bin', 'python');
  const output = run(
    python,
    ['-m', 'coverage', 'run', '-m', 'pytest', '-q', '-rfE', '-p', 'no:cacheprovider'],
    tree,
  );
  const failed = output
    .split('\n')
    .filter((line) => /^(FAILED|ERROR) /.test(line))
    .map((line) => line.replace(/^(FAILED|ERROR) /, '').replace(/ - .*$/, ''));
  run(python, ['-m', 'coverage', 'json', '-o', join(venv, 'coverage.json')], tree);
  const totals = JSON.parse(execFileSync('cat', [join(venv, 'coverage.json')], { encoding: 'utf8' })).totals;
  execFileSync('rm', ['-f', join(tree, '.coverage')]);
  return { failed: failed.sort(), lineCoverage: (totals.covered_lines / totals.num_statements) * 100 };
}

describe(`a real-world project (${PROJECT} from PyPI)`, () => {
  let harness: PipelineHarness;
  let work: string;
  let tree: string;
  let venv: string;

  before(async () => {
    harness = await createPipelineHarness({ PYTEST_MARK: MARK });
    work = await mkdtemp(join(tmpdir(), 'real-world-'));
    execFileSync('python3', [
      '-m',
      'pip',
      'download',
      '--quiet',
      '--no-deps',
      '--no-binary',
      ':all:',
      PROJECT,
      '-d',
      work,
    ]);
    const sdist = (await readdir(work)).find((name) => name.endsWith('.tar.gz'));
    assert.ok(sdist, 'pip downloaded an sdist');
    execFileSync('tar', ['xzf', sdist, '-C', work], { cwd: work });
    tree = join(work, sdist.replace(/\.tar\.gz$/, ''));
    venv = join(work, 'venv');
    execFileSync('python3', ['-m', 'venv', venv]);
    const pinned = await readFile(new URL('../../python/requirements-test.txt', import.meta.url), 'utf8');
    const pins = pinned.split('\n').filter((line) => /^[a-z]/.test(line));
    execFileSync(join(venv, 'bin', 'pip'), ['install', '--quiet', ...pins, '-e', tree]);
  });

  after(async () => {
    await harness.close();
    await rm(work, { recursive: true, force: true });
  });

  const commitTree = async (
    name: string,
  ): Promise<[Awaited<ReturnType<PipelineHarness['newRepo']>>, string]> => {
    const repo = await harness.newRepo(name);
    const files: Record<string, string> = {};
    const walk = async (dir: string, prefix: string) => {
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        const relative = prefix ? `${prefix}/${entry.name}` : entry.name;
        if (entry.name === '.coverage' || entry.name.endsWith('.egg-info') || entry.name === '__pycache__')
          continue;
        if (entry.isDirectory()) await walk(path, relative);
        else if (entry.isFile()) files[relative] = await readFile(path, 'utf8');
      }
    };
    await walk(tree, '');
    const sha = await repo.commit(files, name);
    repo.push('main');
    return [repo, sha];
  };

  test('as published: the report matches pytest and coverage run directly', async () => {
    const [repo, sha] = await commitTree('pristine');
    const report = await harness.build(repo, sha);
    const direct = runDirectly(tree, venv);
    assert.ok(report.testsRun > 150, `ran ${report.testsRun} tests`);
    assert.deepEqual([...report.failedTests].sort(), direct.failed);
    assert.equal(report.lineCoverage, direct.lineCoverage);
  });

  test('with an injected failing test and lint error: the same failures and coverage as run directly', async () => {
    const utils = await readFile(join(tree, 'toolz', 'utils.py'), 'utf8');
    await writeFile(join(tree, 'toolz', 'tests', 'test_injected.py'), INJECTED_TEST);
    await writeFile(join(tree, 'toolz', 'utils.py'), `import os\n${utils}`);
    const [repo, sha] = await commitTree('injected');
    const report = await harness.build(repo, sha);
    const direct = runDirectly(tree, venv);

    assert.equal(report.status, 'FAILED');
    assert.deepEqual(direct.failed, [
      'toolz/tests/test_injected.py::TestInjected::test_method',
      'toolz/tests/test_injected.py::test_injected[2]',
    ]);
    assert.deepEqual([...report.failedTests].sort(), direct.failed);
    assert.equal(report.lineCoverage, direct.lineCoverage);
    assert.ok(
      report.lintErrors.includes('toolz/utils.py:1:8: F401 `os` imported but unused'),
      report.lintErrors.slice(0, 5).join('\n'),
    );
  });
});
