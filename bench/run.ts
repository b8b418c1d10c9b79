// `npm run bench`: ci-runner's build speed against baselines measured in the same run. Not a test: it prints numbers.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { BuildReport } from '../src/delivery/contracts.js';
import { startGitServer } from '../src/git/gitServer.js';
import { loadConfig } from '../src/ops/config.js';
import { createLogger } from '../src/ops/logger.js';
import { configuredOptions, runPipeline } from '../src/pipeline/runPipeline.js';
import { ensureToolchain } from '../src/pipeline/toolchain.js';
import { noSandbox } from '../src/sandbox/buildSandbox.js';
import {
  type NoSandbox,
  prepareSandbox,
  type SandboxHost,
  sandboxRequest,
} from '../src/sandbox/sandboxHost.js';
import * as checkout from '../src/stages/checkout.js';
import type { StageContext } from '../src/stages/types.js';
import { type Backend, benchModule, benchProject } from '../test/support/benchProject.js';
import { createFixtureRepo } from '../test/support/fixtureRepo.js';
import { benchAffectedTests } from './affectedTests.js';
import { benchBridgeDrain } from './bridgeDrain.js';
import { benchEgressInstall } from './egressInstall.js';
import { line, time } from './measure.js';
import { benchRealProject, REAL_MARK } from './realProject.js';

// Asynchronous on purpose: the git server runs in this process and must keep answering.
const run = promisify(execFile);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const logger = createLogger({ level: 'warn', pretty: false, name: 'bench' });
const config = loadConfig({ ...process.env, REDIS_URL: 'redis://127.0.0.1:1', KAFKA_BROKERS: '127.0.0.1:1' });

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'ci-runner-bench-'));
  const served = join(root, 'served');
  await mkdir(served);
  const git = await startGitServer(served);
  const toolchain = await ensureToolchain(
    config.pythonBin,
    resolve(process.env.CACHE_DIR ?? '.cache'),
    logger,
    { path: config.hostPath, inherited: config.buildEnv },
  );
  const sandboxed = await prepareSandbox(sandboxRequest(config.sandbox, config.hostPath, toolchain), logger);
  const repo = await createFixtureRepo(served, git.baseUrl, 'bench');
  const ctx = (dir: string): StageContext => ({
    logger,
    signal: new AbortController().signal,
    buildDir: dir,
    log: () => undefined,
    sandbox: noSandbox(),
  });
  const build = (
    url: string,
    sha: string,
    cacheDir: string,
    sandbox: SandboxHost | NoSandbox = sandboxed,
    pytestMark = 'fast',
  ) =>
    runPipeline(
      { taskId: 'bench', commitSha: sha, branchName: 'main', repositoryUrl: url, attempt: 1 },
      {
        toolchain,
        sandbox,
        ...configuredOptions(config),
        artefactDir: join(root, 'artefacts'),
        cacheDir,
        workDir: join(root, 'work'),
        pytestMark,
        ...(process.env.BENCH_DEBUG
          ? {
              onLog: (text: string) =>
                console.error(
                  `[${Math.round(process.memoryUsage().heapUsed / 1e6)} MB] ${text.split('\n')[0]}`,
                ),
            }
          : {}),
        logger,
        signal: new AbortController().signal,
      },
    );
  const stageMs = (report: BuildReport, name: string) =>
    report.stages.find((stage) => stage.name === name)?.durationMs ?? Number.NaN;
  const affectedRows = () =>
    benchAffectedTests({
      root,
      newRepo: (name) => createFixtureRepo(served, git.baseUrl, name),
      build: (url, sha) => build(url, sha, join(root, 'cache'), sandboxed, REAL_MARK),
    });
  const egressRows = async () => {
    const host = (mode: 'index' | 'internet') =>
      prepareSandbox(
        sandboxRequest(
          { ...config.sandbox, egress: { ...config.sandbox.egress, mode } },
          config.hostPath,
          toolchain,
        ),
        logger,
      );
    const [index, internet] = [await host('index'), await host('internet')];
    if (!index.enabled || !internet.enabled) {
      console.log('egress: not measured (SANDBOX=off: builds have the runner network)');
      return;
    }
    await benchEgressInstall({
      root,
      rounds: ROUNDS,
      newRepo: (name) => createFixtureRepo(served, git.baseUrl, name),
      build: (url, sha, cacheDir, sandbox) => build(url, sha, cacheDir, sandbox),
      hosts: { index, internet },
    });
  };
  try {
    console.log(`ci-runner bench: ${ROUNDS} rounds each, medians; Python ${toolchain.pythonVersion}`);
    console.log(`sandbox: ${sandboxed.enabled ? 'on' : 'off'}\n`);
    if (process.env.BENCH_ONLY === 'affected') {
      await affectedRows();
      return;
    }
    const realRows = () =>
      benchRealProject({
        root,
        rounds: Number(process.env.BENCH_REAL_ROUNDS ?? 3),
        toolchain,
        newRepo: (name) => createFixtureRepo(served, git.baseUrl, name),
        build: (url, sha) => build(url, sha, join(root, 'cache'), sandboxed, REAL_MARK),
        dropLintCaches: () => rm(join(root, 'cache', 'lint'), { recursive: true, force: true }),
      });
    if (process.env.BENCH_ONLY === 'real') {
      await realRows();
      return;
    }
    if (process.env.BENCH_ONLY === 'egress') {
      await egressRows();
      return;
    }

    // 1. Cold (new dependency declarations, package caches warm) vs warm (a one-line commit) builds, per backend.
    const cacheDir = join(root, 'cache');
    const colds: number[] = [];
    const warms: number[] = [];
    const lintWarm: number[] = [];
    const lintOneFile: number[] = [];
    for (const backend of ['setuptools', 'flit', 'hatchling'] as Backend[]) {
      const backendRepo = await createFixtureRepo(served, git.baseUrl, `bench-${backend}`);
      const installCold: number[] = [];
      const installWarm: number[] = [];
      // Primes the package caches (uv's, the shared dependency environment): not measured.
      const prime = await backendRepo.commit(benchProject(40, 'prime', backend), 'prime');
      backendRepo.push('main');
      await build(backendRepo.url, prime, cacheDir);
      for (let round = 0; round < ROUNDS; round += 1) {
        console.error(`bench: ${backend} round ${round + 1}/${ROUNDS}`);
        const first = await backendRepo.commit(
          benchProject(40, `${backend} ${round}`, backend),
          `cold ${round}`,
        );
        backendRepo.push('main');
        const started = performance.now();
        installCold.push(stageMs(await build(backendRepo.url, first, cacheDir), 'install'));
        if (backend === 'setuptools') colds.push(performance.now() - started);
        const second = await backendRepo.commit(
          { 'calc/mod0.py': benchModule(0, round + 1) },
          `one line ${round}`,
        );
        backendRepo.push('main');
        const again = performance.now();
        const warm = await build(backendRepo.url, second, cacheDir);
        installWarm.push(stageMs(warm, 'install'));
        if (backend !== 'setuptools') continue;
        warms.push(performance.now() - again);
        lintWarm.push(stageMs(warm, 'lint'));
        // The same tools by hand on just the changed file, side by side as the lint stage runs them.
        const file = join(root, `one-${round}`, 'calc', 'mod0.py');
        await mkdir(join(root, `one-${round}`, 'calc'), { recursive: true });
        await writeFile(file, benchModule(0, round + 1));
        const cwd = join(root, `one-${round}`);
        lintOneFile.push(
          await time(() =>
            Promise.all([
              run(toolchain.python, ['-m', 'black', '--check', '--quiet', 'calc/mod0.py'], { cwd }),
              run(toolchain.python, ['-m', 'ruff', 'check', '--no-cache', '--quiet', 'calc/mod0.py'], {
                cwd,
              }),
            ]),
          ),
        );
      }
      line(
        `install, warm (same declarations), ${backend}`,
        installWarm,
        'install, cold (new declarations)',
        installCold,
        'warm <= 50 ms',
      );
    }
    line('warm build (one-line commit)', warms, 'cold build (new declarations)', colds);
    line(
      'lint of a one-file commit (caches warm)',
      lintWarm,
      'black + ruff on that one file by hand',
      lintOneFile,
      '<= 1.20',
    );

    // The project the rows below build, its environment made by one unmeasured build.
    await repo.commit(benchProject(40, 'main'), 'main');
    repo.push('main');
    const stamp = await repo.commit({ 'STAMP.txt': 'main\n' }, 'stamp');
    repo.push('main');
    await build(repo.url, stamp, cacheDir);

    // 2. Checkout of a new commit from the warm object cache vs the git CLI's shallow clone of it.
    const ours: number[] = [];
    const cli: number[] = [];
    for (let round = 0; round < ROUNDS; round += 1) {
      const sha = await repo.commit({ 'STAMP.txt': `checkout ${round}\n` }, `checkout ${round}`);
      repo.push('main');
      const dir = join(root, `co-ours-${round}`);
      const input = {
        repositoryUrl: repo.url,
        commitSha: sha,
        branchName: 'main',
        dir,
        cacheDir,
        timeoutMs: 60_000,
      };
      ours.push(await time(() => checkout.run(input, ctx(root))));
      const clone = join(root, `co-cli-${round}`);
      cli.push(
        await time(() => run('git', ['clone', '--quiet', '--depth', '1', '--no-tags', repo.url, clone])),
      );
    }
    line('checkout of a new commit, warm cache', ours, 'git clone --depth 1 (git CLI)', cli, '<= 1.00');

    // 3. The sandbox's cost: the same warm build with and without it, interleaved.
    const withBox: number[] = [];
    const without: number[] = [];
    for (let round = 0; round < ROUNDS; round += 1) {
      const sha = await repo.commit({ 'STAMP.txt': `sandbox ${round}\n` }, `sandbox ${round}`);
      repo.push('main');
      without.push(await time(() => build(repo.url, sha, cacheDir, { enabled: false })));
      withBox.push(await time(() => build(repo.url, sha, cacheDir)));
    }
    line('warm build, sandboxed', withBox, 'the same build, SANDBOX=off', without, '<= 1.05');

    // 4. Warm build vs the bare commands in a ready environment.
    const ready = join(root, 'ready');
    await run('git', ['clone', '--quiet', '--depth', '1', '--no-tags', repo.url, ready]);
    const venv = join(root, 'ready-venv');
    const uvEnv = { ...process.env, UV_CACHE_DIR: join(root, 'ready-uv') };
    await run(toolchain.uv, ['venv', '--quiet', '--python', toolchain.basePython, venv], { env: uvEnv });
    await run(
      toolchain.uv,
      [
        'pip',
        'install',
        '--quiet',
        '--python',
        join(venv, 'bin', 'python'),
        '-r',
        toolchain.testRequirements,
        'six==1.16.0',
      ],
      { env: uvEnv, cwd: ready },
    );
    const python = join(venv, 'bin', 'python');
    const bare = async () => {
      const opts = { cwd: ready };
      await run(toolchain.python, ['-m', 'ruff', 'check', '--no-cache', '.'], opts);
      await run(toolchain.python, ['-m', 'black', '--check', '--quiet', '.'], opts);
      await run(
        python,
        ['-m', 'coverage', 'run', '-m', 'pytest', '-q', '-m', 'fast', '-p', 'no:cacheprovider'],
        opts,
      );
      await run(python, ['-m', 'coverage', 'json', '-q', '-o', join(root, 'coverage.json')], opts);
    };
    const bareTimes: number[] = [];
    const warmBuilds: number[] = [];
    for (let round = 0; round < ROUNDS; round += 1) {
      bareTimes.push(await time(bare));
      const next = await repo.commit({ 'calc/mod0.py': benchModule(0, round + 10) }, `compare ${round}`);
      repo.push('main');
      warmBuilds.push(await time(() => build(repo.url, next, cacheDir)));
    }
    line(
      'warm build, end to end',
      warmBuilds,
      'ruff + black + pytest/coverage by hand',
      bareTimes,
      '<= 0.80',
    );

    // 5. The command line's start-up: the compiled `ci-runner` vs the same entry point through tsx.
    const compiled: number[] = [];
    const throughTsx: number[] = [];
    await run(resolve('bin/ci-runner'), ['--help']); // compiles dist/ first if the sources changed (not timed)
    for (let round = 0; round < ROUNDS; round += 1) {
      compiled.push(await time(() => run(resolve('bin/ci-runner'), ['build', '--help'])));
      throughTsx.push(
        await time(() => run('node', ['--import', 'tsx', resolve('src/cli/main.ts'), 'build', '--help'])),
      );
    }
    if (process.env.BENCH_REAL !== '0') await realRows();
    line('ci-runner build --help (compiled)', compiled, 'the same through tsx', throughTsx, '<= 300 ms');
    await egressRows();
    if (process.env.BENCH_AFFECTED !== '0') await affectedRows();
  } finally {
    await git.close();
    await repo.cleanup();
    await rm(root, { recursive: true, force: true });
  }
}

// The bridge row needs the local Redis and Kafka; without them it says so instead of a number.
async function bridgeRow(): Promise<void> {
  try {
    console.log(await benchBridgeDrain(logger));
  } catch (error) {
    console.log(
      `bridge drain: not measured (${(error as Error).message}); start Redis and Kafka: npm run services:up`,
    );
  }
}

main()
  // BENCH_ONLY runs its rows alone.
  .then(() => (process.env.BENCH_ONLY ? undefined : bridgeRow()))
  .catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
