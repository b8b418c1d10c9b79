import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { BuildReport } from '../../src/delivery/contracts.js';
import { downloadSdist } from '../support/downloadSdist.js';
import { createPipelineHarness, type PipelineHarness } from '../support/pipelineHarness.js';
import { REAL_PROJECTS } from '../support/realProjects.js';

// Real projects from PyPI (sdists, with their own tests and settings), built by the runner and run by hand with the
// same tool versions in a plain venv: the report must say what pytest, coverage, ruff and black say themselves.
// `npm run realworld` builds every project; `npm test` the first two.
// `REALWORLD_ONLY=attrs,toolz` builds the projects whose requirement contains one of those texts.
const FULL = process.env.REALWORLD_SCALE === 'full';
const ONLY = process.env.REALWORLD_ONLY;
const PROJECTS = ONLY
  ? REAL_PROJECTS.filter((project) => ONLY.split(',').some((name) => project.requirement.includes(name)))
  : FULL
    ? REAL_PROJECTS
    : REAL_PROJECTS.slice(0, 2);
// A mark no project uses: the runner's expression then selects what the project's own settings select.
const MARK = 'not ci_runner_excluded';
const INJECTED_TEST = `import pytest


@pytest.mark.parametrize("n", [1, 2])
def test_injected(n):
    assert n == 1


class TestInjected:
    def test_method(self):
        assert [] == [0]
`;

const run = promisify(execFile);

// Builds run unprivileged; so do the tools run by hand (as nobody when the suite runs as root), or a test that
// checks file permissions would take another path in each. An interpreter installed under /root (pyenv) is made
// reachable for nobody the way the build sandbox does it: a private mount namespace that shows only it there.
function asBuildUser(): string[] {
  if (process.getuid?.() !== 0) return [];
  const prefix = execFileSync('python3', ['-c', 'import sys; print(sys.base_prefix)']).toString().trim();
  // bwrap would create the directories above the bind 0700; they must be traversable.
  const above = prefix
    .split('/')
    .slice(2, -1)
    .map((_, i, parts) => `/root/${parts.slice(0, i + 1).join('/')}`);
  const dirs = above.flatMap((dir) => ['--perms', '0755', '--dir', dir]);
  const reveal = prefix.startsWith('/root/')
    ? ['--tmpfs', '/root', ...dirs, '--ro-bind', prefix, prefix]
    : [];
  const nobody = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];
  return ['bwrap', '--dev-bind', '/', '/', ...reveal, '--', ...nobody];
}
const AS_BUILD_USER = asBuildUser();

function tool(command: string, args: string[], cwd: string) {
  const [program, ...prefix] = [...AS_BUILD_USER, command];
  const options = {
    cwd,
    maxBuffer: 256 * 1024 * 1024,
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', HOME: cwd },
  };
  return run(program as string, [...prefix, ...args], options);
}

async function output(command: string, args: string[], cwd: string): Promise<string> {
  try {
    const { stdout, stderr } = await tool(command, args, cwd);
    return `${stdout}\n${stderr}`;
  } catch (error) {
    const failed = error as { stdout?: string; stderr?: string };
    return `${failed.stdout ?? ''}\n${failed.stderr ?? ''}`;
  }
}

interface Verdict {
  failed: string[];
  testsRun: number;
  lineCoverage: number;
  lint: number;
}

/** pytest, coverage, ruff and black run by hand in the tree: the oracle the report must equal. */
async function runDirectly(tree: string, venv: string): Promise<Verdict> {
  const python = join(venv, 'bin', 'python');
  const junit = join(venv, 'junit.xml');
  await output(
    python,
    ['-m', 'coverage', 'run', '-m', 'pytest', '-q', '-p', 'no:cacheprovider', `--junitxml=${junit}`],
    tree,
  );
  const xml = await readFile(junit, 'utf8');
  const failed = new Set<string>();
  let testsRun = 0;
  for (const match of xml.matchAll(
    /<testcase classname="([^"]*)" name="([^"]*)"[^>]*?(\/>|>([\s\S]*?)<\/testcase>)/g,
  )) {
    const body = match[4] ?? '';
    if (/<skipped/.test(body)) continue;
    testsRun += 1;
    if (/<(failure|error)/.test(body)) failed.add(`${match[1]}::${match[2]}`);
  }
  await output(python, ['-m', 'coverage', 'json', '-o', join(venv, 'coverage.json')], tree);
  const totals = JSON.parse(await readFile(join(venv, 'coverage.json'), 'utf8')).totals;
  await rm(join(tree, '.coverage'), { force: true });
  const ruff = JSON.parse(
    (
      await tool(
        python,
        ['-m', 'ruff', 'check', '--output-format', 'json', '--exit-zero', '--no-cache', '.'],
        tree,
      )
    ).stdout,
  ) as unknown[];
  const black = (await output(python, ['-m', 'black', '--check', '.'], tree))
    .split('\n')
    .filter((line) => line.startsWith('would reformat ') || line.startsWith('error: cannot format ')).length;
  return {
    failed: [...failed].sort(),
    testsRun,
    lineCoverage: (totals.covered_lines / totals.num_statements) * 100,
    lint: ruff.length + black,
  };
}

// JUnit names a test by its class path and name; pytest's node ids by file path. Compare on the parts both have:
// the test function (with parameters) and, when there is one, its class.
function shortId(id: string): string {
  const parts = id.split('::');
  const name = parts.at(-1) ?? id;
  const owner = parts.at(-2) ?? '';
  const className = owner.includes('/') || owner.endsWith('.py') ? '' : owner.split('.').at(-1);
  return className && /^[A-Z]/.test(className) ? `${className}::${name}` : name;
}

const table: string[][] = [];

describe('real projects from PyPI: the report equals the tools run directly', () => {
  let harness: PipelineHarness;
  let work: string;

  before(async () => {
    harness = await createPipelineHarness({ PYTEST_MARK: MARK });
    work = await mkdtemp(join(tmpdir(), 'real-world-'));
  });

  after(async () => {
    await harness?.close();
    await rm(work, { recursive: true, force: true });
    console.log(
      [
        'project | backend | layout | case (environment) | tests run (ours/tools) | failed ids equal | coverage ours vs tools | lint ours vs tools',
        '--- | --- | --- | --- | --- | --- | --- | ---',
        ...table.map((row) => row.join(' | ')),
      ].join('\n'),
    );
  });

  for (const project of PROJECTS) {
    describe(`${project.requirement} (${project.backend}, ${project.layout} layout: ${project.exercises})`, () => {
      let tree: string;
      let venv: string;
      // One repository: the injected commit is a warm build (same declarations) on top of the published one.
      let repo: Awaited<ReturnType<PipelineHarness['newRepo']>>;

      before(async () => {
        const dir = await mkdtemp(join(work, 'sdist-'));
        tree = await downloadSdist(project.requirement, dir);
        venv = join(dir, 'venv');
        execFileSync('python3', ['-m', 'venv', venv]);
        const pip = join(venv, 'bin', 'pip');
        const pins = async (name: string) =>
          (await readFile(new URL(`../../python/${name}`, import.meta.url), 'utf8'))
            .split('\n')
            .filter((line) => /^[a-z]/.test(line));
        const tools = await pins('requirements-tools.txt');
        execFileSync(pip, ['install', '--quiet', ...tools.filter((line) => line.startsWith('pip=='))]);
        // The runner's test tools at the runner's versions unless the project pins its own, as the build does.
        execFileSync(pip, ['install', '--quiet', ...(await pins('requirements-test.txt'))]);
        execFileSync(pip, ['install', '--quiet', '-e', '.', ...project.testDependencies], { cwd: tree });
        execFileSync(pip, ['install', '--quiet', ...tools.filter((line) => /^(black|ruff)==/.test(line))]);
        await rm(join(tree, '.coverage'), { force: true });
        execFileSync('chmod', ['-R', 'a+rwX', work]);
      });

      const environment = (report: BuildReport) =>
        report.stages.find((stage) => stage.name === 'install')?.summary.includes('shared, read-only')
          ? 'shared'
          : 'own';

      const compare = async (name: string, sha: string, repoReport: BuildReport) => {
        const direct = await runDirectly(tree, venv);
        const ours = [...repoReport.failedTests].map(shortId).sort();
        const theirs = direct.failed.map(shortId).sort();
        const idsEqual = JSON.stringify(ours) === JSON.stringify(theirs);
        table.push([
          project.requirement,
          project.backend,
          project.layout,
          `${name} (${environment(repoReport)})`,
          `${repoReport.testsRun}/${direct.testsRun}`,
          idsEqual ? `yes (${ours.length})` : `NO: ours ${ours.join(' ')} tools ${theirs.join(' ')}`,
          `${repoReport.lineCoverage.toFixed(2)} vs ${direct.lineCoverage.toFixed(2)}`,
          `${repoReport.lintErrors.length} vs ${direct.lint}`,
        ]);
        assert.ok(direct.testsRun >= project.minTests, `the tools ran ${direct.testsRun} tests`);
        assert.deepEqual(ours, theirs, `failed tests of ${sha}`);
        assert.equal(repoReport.testsRun, direct.testsRun);
        assert.ok(
          Math.abs(repoReport.lineCoverage - direct.lineCoverage) < 0.01,
          `coverage ${repoReport.lineCoverage} vs ${direct.lineCoverage}`,
        );
        assert.equal(
          repoReport.lintErrors.length,
          direct.lint,
          repoReport.lintErrors.slice(0, 10).join('\n'),
        );
        return direct;
      };

      test('as published', async () => {
        repo = await harness.newRepo(`real-${project.requirement.replace(/[^a-z0-9]+/gi, '-')}`);
        const sha = repo.commitDir(tree, 'as published');
        repo.push('main');
        const report = await harness.build(repo, sha);
        assert.notEqual(report.status, 'ERRORED', report.error);
        await compare('as published', sha, report);
      });

      test('with an injected failing test and lint finding', async () => {
        await writeFile(join(tree, project.testsDir, 'test_ci_runner_injected.py'), INJECTED_TEST);
        const module = await readFile(join(tree, project.lintTarget), 'utf8');
        // At the end, so that a module starting with `from __future__ import` stays importable.
        await writeFile(join(tree, project.lintTarget), `${module}\n\nimport os\n`);
        const sha = repo.commitDir(tree, 'injected');
        repo.push('main');
        const report = await harness.build(repo, sha);
        assert.equal(report.status, 'FAILED', report.error);
        const direct = await compare('injected', sha, report);
        for (const id of ['test_injected[2]', 'TestInjected::test_method']) {
          assert.ok(direct.failed.map(shortId).includes(id), `the tools name ${id}`);
        }
      });
    });
  }
});
