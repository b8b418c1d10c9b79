import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { BuildReport } from '../../src/delivery/contracts.js';
import { downloadSdist } from '../support/downloadSdist.js';
import { createPipelineHarness, type PipelineHarness } from '../support/pipelineHarness.js';
import { type OwnLint, REAL_PROJECTS } from '../support/realProjects.js';

// Real projects from PyPI (sdists, with their own tests and settings), built by the runner and compared with the
// repository's own rules run by hand: pytest and coverage in a plain venv, ruff and the repository's formatter at the
// versions it pins (test/support/realProjects.ts says which, read by hand from each project's configuration). At a
// release its own CI passed, the report must be PASSED; with one failing test and one line its formatter would change,
// FAILED with exactly those two entries.
// `npm run realworld` builds every project; `npm test` the first two.
// `REALWORLD_ONLY=attrs,click` builds the projects whose requirement contains one of those texts.
const FULL = process.env.REALWORLD_SCALE === 'full';
const ONLY = process.env.REALWORLD_ONLY;
const PROJECTS = ONLY
  ? REAL_PROJECTS.filter((project) => ONLY.split(',').some((name) => project.requirement.includes(name)))
  : FULL
    ? REAL_PROJECTS
    : REAL_PROJECTS.slice(0, 2);
const BROKEN_TEST = `

def test_ci_runner_broken():
    assert "ci-runner".upper() == "ci-runner"
`;
const UNFORMATTED_LINE = '\n\n_CI_RUNNER_UNFORMATTED = [1,2]\n';

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
  ruff: number;
  /** The files the repository's formatter would change. */
  unformatted: string[];
}

/** Where the repository's own lint tools are installed, at its versions. */
interface LintVenv {
  python: string;
  ruff: string;
}

const atLeast016 = (version: string) => {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 0 || minor >= 16;
};

/** pytest and coverage run by hand in the tree, and the repository's own lint: the oracle the report must equal. */
async function runDirectly(
  tree: string,
  venv: string,
  lint: LintVenv,
  own: OwnLint,
  ruff: string,
): Promise<Verdict> {
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
  const rules = own.ruffConfigured ? [] : ['--select', 'E4,E7,E9,F'];
  const check = ['check', '--no-fix', ...rules, '--output-format', 'json', '--exit-zero', '--no-cache', '.'];
  const findings = JSON.parse((await tool(lint.ruff, check, tree)).stdout) as unknown[];
  let unformatted: string[];
  if (own.formatter === 'ruff format') {
    const concise = atLeast016(ruff) ? ['--output-format', 'concise'] : [];
    const text = await output(lint.ruff, ['format', '--check', '--no-cache', ...concise, '.'], tree);
    unformatted = text
      .split('\n')
      .flatMap(
        (line) =>
          /^Would reformat: (.+)$/.exec(line)?.[1] ?? /^(.+?):\d+:\d+: unformatted:/.exec(line)?.[1] ?? [],
      );
  } else {
    const text = await output(lint.python, ['-m', 'black', '--check', '.'], tree);
    unformatted = text.split('\n').flatMap((line) => /^would reformat (.+)$/.exec(line)?.[1] ?? []);
  }
  return {
    failed: [...failed].sort(),
    testsRun,
    lineCoverage: (totals.covered_lines / totals.num_statements) * 100,
    ruff: findings.length,
    unformatted: unformatted.map((path) => relative(tree, resolve(tree, path))).sort(),
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

const runnerPins = async (name: string) =>
  (await readFile(new URL(`../../python/${name}`, import.meta.url), 'utf8'))
    .split('\n')
    .filter((line) => /^[a-z]/.test(line));

describe("real projects from PyPI: the report equals the repository's own rules, run by hand", () => {
  let harness: PipelineHarness;
  let work: string;

  before(async () => {
    harness = await createPipelineHarness();
    work = await mkdtemp(join(tmpdir(), 'real-world-'));
  });

  after(async () => {
    await harness?.close();
    await rm(work, { recursive: true, force: true });
    console.log(
      [
        "project | backend | formatter (why) | versions | case (environment) | report | repository's own | tests run (ours/tools) | failed ids equal | coverage ours vs tools | lint ours vs own",
        '--- | --- | --- | --- | --- | --- | --- | --- | --- | --- | ---',
        ...table.map((row) => row.join(' | ')),
      ].join('\n'),
    );
  });

  for (const project of PROJECTS) {
    describe(`${project.requirement} (${project.backend}, ${project.layout} layout: ${project.exercises})`, () => {
      let tree: string;
      let venv: string;
      let lint: LintVenv;
      let ruff: string;
      let black: string | undefined;
      // One repository: the broken commit is a warm build (same declarations) on top of the published one.
      let repo: Awaited<ReturnType<PipelineHarness['newRepo']>>;

      before(async () => {
        const dir = await mkdtemp(join(work, 'sdist-'));
        tree = await downloadSdist(project.requirement, dir);
        for (const [name, text] of Object.entries(project.repositoryFiles ?? {})) {
          await writeFile(join(tree, name), text);
        }
        venv = join(dir, 'venv');
        execFileSync('python3', ['-m', 'venv', venv]);
        const pip = join(venv, 'bin', 'pip');
        const tools = await runnerPins('requirements-tools.txt');
        const runnerVersion = (name: string) =>
          tools.find((line) => line.startsWith(`${name}==`))?.split('==')[1] ?? '';
        execFileSync(pip, ['install', '--quiet', ...tools.filter((line) => line.startsWith('pip=='))]);
        // The runner's test tools at the runner's versions unless the project pins its own, as the build does.
        execFileSync(pip, ['install', '--quiet', ...(await runnerPins('requirements-test.txt'))]);
        execFileSync(pip, ['install', '--quiet', '-e', '.', ...project.testDependencies], { cwd: tree });
        // The repository's own lint tools at its own versions, in a venv of their own.
        ruff = project.own.ruff === 'runner' ? runnerVersion('ruff') : project.own.ruff;
        black =
          project.own.formatter === 'black'
            ? project.own.black === 'runner' || !project.own.black
              ? runnerVersion('black')
              : project.own.black
            : undefined;
        const lintDir = join(dir, 'lint-venv');
        execFileSync('python3', ['-m', 'venv', lintDir]);
        const lintTools = [`ruff==${ruff}`, ...(black ? [`black==${black}`] : [])];
        execFileSync(join(lintDir, 'bin', 'pip'), [
          'install',
          '--quiet',
          '--only-binary=:all:',
          ...lintTools,
        ]);
        lint = { python: join(lintDir, 'bin', 'python'), ruff: join(lintDir, 'bin', 'ruff') };
        await rm(join(tree, '.coverage'), { force: true });
        execFileSync('chmod', ['-R', 'a+rwX', work]);
      });

      const environment = (report: BuildReport) =>
        report.stages.find((stage) => stage.name === 'install')?.summary.includes('shared, read-only')
          ? 'shared'
          : 'own';
      const lintSummary = (report: BuildReport) =>
        report.stages.find((stage) => stage.name === 'lint')?.summary ?? '';

      const compare = async (name: string, sha: string, report: BuildReport) => {
        const direct = await runDirectly(tree, venv, lint, project.own, ruff);
        const ours = [...report.failedTests].map(shortId).sort();
        const theirs = direct.failed.map(shortId).sort();
        const idsEqual = JSON.stringify(ours) === JSON.stringify(theirs);
        const ownLint = direct.ruff + direct.unformatted.length;
        table.push([
          project.requirement,
          project.backend,
          `${project.own.formatter} (${project.own.formatterFrom})`,
          `ruff ${ruff}${black ? `, black ${black}` : ''}`,
          `${name} (${environment(report)})`,
          report.status,
          name === 'as published' ? project.ownVerdict : 'red (one failing test, one unformatted file)',
          `${report.testsRun}/${direct.testsRun}`,
          idsEqual ? `yes (${ours.length})` : `NO: ours ${ours.join(' ')} tools ${theirs.join(' ')}`,
          `${report.lineCoverage.toFixed(2)} vs ${direct.lineCoverage.toFixed(2)}`,
          `${report.lintErrors.length} vs ${ownLint}`,
        ]);
        assert.ok(direct.testsRun >= project.minTests, `the tools ran ${direct.testsRun} tests`);
        assert.deepEqual(ours, theirs, `failed tests of ${sha}`);
        assert.equal(report.testsRun, direct.testsRun);
        assert.ok(
          Math.abs(report.lineCoverage - direct.lineCoverage) < 0.01,
          `coverage ${report.lineCoverage} vs ${direct.lineCoverage}`,
        );
        // The same versions the repository's own lint runs, and the same findings.
        const formatter = project.own.formatter === 'black' ? `black ${black}` : `ruff format ${ruff}`;
        assert.match(lintSummary(report), new RegExp(`\\(ruff ${ruff}, ${formatter}\\)$`));
        const reformat = report.lintErrors.filter((entry) => entry.endsWith(': would reformat'));
        assert.deepEqual(
          reformat.map((entry) => entry.replace(/: would reformat$/, '')).sort(),
          direct.unformatted,
        );
        assert.equal(report.lintErrors.length, ownLint, report.lintErrors.slice(0, 10).join('\n'));
        return direct;
      };

      test('as published: PASSED, as its own CI', async () => {
        repo = await harness.newRepo(`real-${project.requirement.replace(/[^a-z0-9]+/gi, '-')}`);
        const sha = repo.commitDir(tree, 'as published');
        repo.push('main');
        const report = await harness.build(repo, sha);
        await compare('as published', sha, report);
        assert.equal(report.status, 'PASSED', `${report.error} ${report.lintErrors.slice(0, 5)}`);
        assert.deepEqual(report.lintErrors, []);
      });

      test('with one failing test and one unformatted file: FAILED with exactly those', async () => {
        const testFile = (await readFile(join(tree, project.testFile), 'utf8')).trimEnd();
        await writeFile(join(tree, project.testFile), `${testFile}\n${BROKEN_TEST}`);
        // The assertion's line: after the file's own lines, two blank lines and the `def`.
        const assertion = testFile.split('\n').length + 4;
        const module = await readFile(join(tree, project.lintTarget), 'utf8');
        await writeFile(join(tree, project.lintTarget), `${module.trimEnd()}\n${UNFORMATTED_LINE}`);
        const sha = repo.commitDir(tree, 'broken');
        repo.push('main');
        const report = await harness.build(repo, sha);
        await compare('broken', sha, report);
        assert.equal(report.status, 'FAILED', report.error);
        assert.deepEqual(report.failedTests, [`${project.testFile}::test_ci_runner_broken`]);
        // Why and where, as pytest says it.
        const [broken] = report.failures;
        assert.equal(broken?.kind, 'failed');
        assert.equal(broken?.location, `${project.testFile}:${assertion}`);
        assert.match(broken?.message ?? '', /^AssertionError: assert 'CI-RUNNER' == 'ci-runner'/);
        assert.deepEqual(report.lintErrors, [`${project.lintTarget}: would reformat`]);
      });
    });
  }
});
