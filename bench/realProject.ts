// The real-project rows of `npm run bench`: a pinned PyPI project with over 1,000 tests, a warm build of a one-line
// commit against the bare tools (sequential, and lint beside tests), against the original sketch's sequential
// runner, and lint with cold and warm caches.
import { execFile, execFileSync } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { BuildReport } from '../src/delivery/contracts.js';
import type { Toolchain } from '../src/pipeline/toolchain.js';
import { downloadSdist } from '../test/support/downloadSdist.js';
import type { FixtureRepo } from '../test/support/fixtureRepo.js';
import { CLICK_PRE_COMMIT } from '../test/support/realProjects.js';
import { line, time } from './measure.js';

const run = promisify(execFile);
/** click: flit_core, src layout, [dependency-groups] tests, ~2,400 tests. */
const PROJECT = 'click==8.5.1';
const CHANGED_FILE = 'src/click/utils.py';
/** A mark nothing uses: every build and every baseline runs the project's whole selection. */
export const REAL_MARK = 'not ci_runner_excluded';

export interface RealBenchContext {
  root: string;
  rounds: number;
  toolchain: Toolchain;
  newRepo: (name: string) => Promise<FixtureRepo>;
  /** A build with the runner's pipeline, its mark REAL_MARK; `cacheDir` shared by every round. */
  build: (url: string, sha: string) => Promise<BuildReport>;
  /** Removes the repository's lint caches (the next build lints cold). */
  dropLintCaches: () => Promise<void>;
}

const stageMs = (report: BuildReport, name: string) =>
  report.stages.find((stage) => stage.name === name)?.durationMs ?? Number.NaN;

async function pins(name: string): Promise<string[]> {
  const text = await readFile(new URL(`../python/${name}`, import.meta.url), 'utf8');
  return text.split('\n').filter((row) => /^[a-z]/.test(row));
}

// A ready venv with the runner's pinned tools, the project editable with its test group, and pytest-cov (the
// sketch's coverage plugin).
async function readyVenv(root: string, tree: string, name: string): Promise<string> {
  const venv = join(root, name);
  execFileSync('python3', ['-m', 'venv', venv]);
  const pip = join(venv, 'bin', 'pip');
  const tools = await pins('requirements-tools.txt');
  execFileSync(pip, ['install', '--quiet', ...tools.filter((row) => /^(pip|black|ruff)==/.test(row))]);
  execFileSync(pip, ['install', '--quiet', ...(await pins('requirements-test.txt')), 'pytest-cov']);
  execFileSync(pip, ['install', '--quiet', '-e', '.', '--group', 'tests'], { cwd: tree });
  return venv;
}

export async function benchRealProject(ctx: RealBenchContext): Promise<void> {
  console.error(`bench: ${PROJECT} from PyPI`);
  const tree = await downloadSdist(PROJECT, await mkdtemp(join(ctx.root, 'real-')));
  // What click's own CI reads and its sdist leaves out: its formatter is ruff format (pre-commit), not black.
  await writeFile(join(tree, '.pre-commit-config.yaml'), CLICK_PRE_COMMIT);
  const python = join(await readyVenv(ctx.root, tree, 'real-venv'), 'bin', 'python');
  // The sketch installs each clone into its one persistent environment: not the one the bare tools use.
  const sketchPython = join(await readyVenv(ctx.root, tree, 'sketch-venv'), 'bin', 'python');
  const repo = await ctx.newRepo('real-click');
  repo.commitDir(tree, 'as published');
  repo.push('main');
  // Every later round is a one-line commit; the first build (environment, caches) is not measured.
  const prime = repo.commitDir(tree, 'prime');
  repo.push('main');
  await ctx.build(repo.url, prime);
  // The same project with `test-workers = "auto"` (pytest-xdist), in a repository of its own.
  const xdistTree = `${tree}-xdist`;
  execFileSync('cp', ['-R', tree, xdistTree]);
  await appendFile(join(xdistTree, 'pyproject.toml'), '\n[tool.ci-runner]\ntest-workers = "auto"\n');
  const xdistRepo = await ctx.newRepo('real-click-xdist');
  xdistRepo.commitDir(xdistTree, 'as published, test-workers auto');
  xdistRepo.push('main');
  const xdistPrime = xdistRepo.commitDir(xdistTree, 'prime');
  xdistRepo.push('main');
  await ctx.build(xdistRepo.url, xdistPrime);

  const env = { ...process.env, HOME: join(ctx.root, 'real-home') };
  await mkdir(env.HOME, { recursive: true });
  const inTree = { cwd: tree, env, maxBuffer: 256 * 1024 * 1024 };
  const quietly = (command: string, args: string[], options = inTree) =>
    run(command, args, options).catch(() => undefined);
  const lintByHand = () =>
    Promise.all([
      quietly(python, ['-m', 'ruff', 'check', '--no-cache', '--quiet', '.']),
      quietly(python, ['-m', 'ruff', 'format', '--check', '--no-cache', '--quiet', '.']),
    ]);
  const testsByHand = async () => {
    // No -m: the project's own selection (its addopts), which the runner's no-op mark only narrows.
    await quietly(python, ['-m', 'coverage', 'run', '-m', 'pytest', '-q', '-p', 'no:cacheprovider']);
    const report = join(ctx.root, 'real-coverage.json');
    await rm(report, { force: true });
    await quietly(python, ['-m', 'coverage', 'json', '-q', '-o', report]);
    // A baseline that failed to run would flatter the runner: it must have measured the whole suite.
    const totals = JSON.parse(await readFile(report, 'utf8')).totals;
    if (!(totals?.num_statements > 0)) throw new Error('the bare tools measured no coverage');
  };
  // The sketch (seed/phase-07): a fresh shallow clone, pip install into one persistent environment with a warm
  // pip cache, black, ruff, pytest --cov, a tarball of the clone; one after another.
  const sketch = async (sha: string) => {
    const work = await mkdtemp(join(ctx.root, 'sketch-'));
    const clone = join(work, 'repo');
    await run('git', ['clone', '--quiet', '--depth', '1', '--branch', 'main', repo.url, clone]);
    await run('git', ['checkout', '--quiet', sha], { cwd: clone });
    const options = { cwd: clone, env, maxBuffer: 256 * 1024 * 1024 };
    await quietly(
      sketchPython,
      ['-m', 'pip', 'install', '--quiet', '-e', '.', '--cache-dir', join(ctx.root, 'pipcache')],
      options,
    );
    await quietly(sketchPython, ['-m', 'black', '--check', '.'], options);
    await quietly(sketchPython, ['-m', 'ruff', 'check', '.'], options);
    await quietly(
      sketchPython,
      ['-m', 'pytest', '-q', '--cov', '--cov-report=json:cov.json', '-p', 'no:cacheprovider'],
      options,
    );
    await run('tar', ['czf', join(work, 'artefact.tar.gz'), '-C', work, 'repo']);
    await rm(work, { recursive: true, force: true });
  };

  const ours: number[] = [];
  const sequential: number[] = [];
  const parallel: number[] = [];
  const sketchTimes: number[] = [];
  const lintWarm: number[] = [];
  const lintCold: number[] = [];
  const oursParallel: number[] = [];
  const fidelity: string[] = [];
  for (let round = 0; round < ctx.rounds; round += 1) {
    console.error(`bench: ${PROJECT} round ${round + 1}/${ctx.rounds}`);
    await appendFile(join(tree, CHANGED_FILE), `\n# bench round ${round}\n`);
    const sha = repo.commitDir(tree, `one line ${round}`);
    repo.push('main');
    const started = performance.now();
    const report = await ctx.build(repo.url, sha);
    ours.push(performance.now() - started);
    lintWarm.push(stageMs(report, 'lint'));
    if (report.testsRun < 1000) throw new Error(`${PROJECT} ran ${report.testsRun} tests: ${report.error}`);
    await appendFile(join(xdistTree, CHANGED_FILE), `\n# bench round ${round}\n`);
    const xdistSha = xdistRepo.commitDir(xdistTree, `one line ${round}`);
    xdistRepo.push('main');
    const xdistStarted = performance.now();
    const xdistReport = await ctx.build(xdistRepo.url, xdistSha);
    oursParallel.push(performance.now() - xdistStarted);
    const ids = (r: BuildReport) => JSON.stringify([...r.failedTests].sort());
    fidelity.push(
      `tests ${xdistReport.testsRun}/${report.testsRun}, failed ids ${ids(xdistReport) === ids(report) ? 'equal' : 'DIFFER'}, coverage ${xdistReport.lineCoverage.toFixed(2)}/${report.lineCoverage.toFixed(2)}`,
    );
    sequential.push(
      await time(async () => {
        await lintByHand();
        await testsByHand();
      }),
    );
    parallel.push(await time(() => Promise.all([lintByHand(), testsByHand()])));
    sketchTimes.push(await time(() => sketch(sha)));
    // The same commit linted with no caches (a repository's first build), not counted above.
    await ctx.dropLintCaches();
    lintCold.push(stageMs(await ctx.build(repo.url, sha), 'lint'));
  }
  const name = PROJECT.split('==')[0];
  line(`${name}: warm build (one-line commit)`, ours, 'bare tools, one after another', sequential, '<= 0.80');
  line(`${name}: warm build (one-line commit)`, ours, 'bare tools, lint beside tests', parallel);
  line(`${name}: warm build (one-line commit)`, ours, "the original sketch's runner", sketchTimes, '<= 0.60');
  line(
    `${name}: warm build, test-workers auto`,
    oursParallel,
    "the original sketch's runner",
    sketchTimes,
    '<= 0.40',
  );
  line(`${name}: warm build, test-workers auto`, oursParallel, 'the same build, tests in one process', ours);
  console.log(`${name}: test-workers auto vs one process, per round: ${fidelity.join('; ')}`);
  line(
    `${name}: lint, caches warm (one-line commit)`,
    lintWarm,
    'lint of the same commit, caches cold',
    lintCold,
  );
}
