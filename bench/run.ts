// `npm run bench`: ci-runner's build speed against baselines measured in the same run. Not a test: it prints numbers.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { loadConfig } from '../src/config.js';
import type { BuildReport } from '../src/contracts.js';
import { startGitServer } from '../src/gitServer.js';
import { createLogger } from '../src/logger.js';
import { configuredOptions, runPipeline } from '../src/pipeline.js';
import { noSandbox } from '../src/sandbox/buildSandbox.js';
import {
  type NoSandbox,
  prepareSandbox,
  type SandboxHost,
  sandboxRequest,
} from '../src/sandbox/sandboxHost.js';
import * as checkout from '../src/stages/checkout.js';
import { ensureToolchain } from '../src/stages/toolchain.js';
import type { StageContext } from '../src/stages/types.js';
import { createFixtureRepo, type Files } from '../test/support/fixtureRepo.js';
import { cleanProject } from '../test/support/pythonProject.js';
import { benchBridgeDrain } from './bridgeDrain.js';

// Asynchronous on purpose: the git server runs in this process and must keep answering.
const run = promisify(execFile);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const logger = createLogger({ level: 'warn', pretty: false, name: 'bench' });
const config = loadConfig({ ...process.env, REDIS_URL: 'redis://127.0.0.1:1', KAFKA_BROKERS: '127.0.0.1:1' });

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function time(work: () => Promise<unknown> | unknown): Promise<number> {
  const started = performance.now();
  await work();
  return performance.now() - started;
}

function line(name: string, ours: number, baselineName: string, baseline: number, target?: string): void {
  const ratio = ours / baseline;
  const verdict = target ? `  target ${target}` : '';
  console.log(
    `${name.padEnd(44)} ${ours.toFixed(0).padStart(6)} ms   ${baselineName.padEnd(34)} ${baseline.toFixed(0).padStart(6)} ms   ratio ${ratio.toFixed(2)}${verdict}`,
  );
}

// A project big enough to notice: the fixture package plus generated modules and tests.
function project(modules: number, stamp: string): Files {
  const files: Files = { ...cleanProject(), 'requirements.txt': 'six==1.16.0\n', 'STAMP.txt': `${stamp}\n` };
  for (let i = 0; i < modules; i += 1) {
    files[`calc/mod${i}.py`] =
      `def f${i}(x):\n    if x > ${i}:\n        return x - ${i}\n    return x + ${i}\n`;
    files[`tests/test_mod${i}.py`] = [
      'import pytest',
      '',
      `from calc.mod${i} import f${i}`,
      '',
      '',
      '@pytest.mark.fast',
      `def test_f${i}():`,
      `    assert f${i}(${i + 1}) == 1`,
      '',
    ].join('\n');
  }
  return files;
}

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
  const build = (sha: string, cacheDir: string, sandbox: SandboxHost | NoSandbox = sandboxed) =>
    runPipeline(
      { taskId: 'bench', commitSha: sha, branchName: 'main', repositoryUrl: repo.url, attempt: 1 },
      {
        toolchain,
        sandbox,
        ...configuredOptions(config),
        artefactDir: join(root, 'artefacts'),
        cacheDir,
        workDir: join(root, 'work'),
        pytestMark: 'fast',
        logger,
        signal: new AbortController().signal,
      },
    );
  const stageMs = (report: BuildReport, name: string) =>
    report.stages.find((stage) => stage.name === name)?.durationMs ?? Number.NaN;
  try {
    console.log(`ci-runner bench: ${ROUNDS} rounds each, medians; Python ${toolchain.pythonVersion}`);
    console.log(`sandbox: ${sandboxed.enabled ? 'on' : 'off'}\n`);

    // 1. Cold vs warm build (install measured inside the same builds).
    const colds: number[] = [];
    const warms: number[] = [];
    const installCold: number[] = [];
    const installWarm: number[] = [];
    for (let round = 0; round < ROUNDS; round += 1) {
      const cacheDir = join(root, `cache-${round}`);
      const first = await repo.commit(project(40, `cold ${round}`), `cold ${round}`);
      repo.push('main');
      const started = performance.now();
      installCold.push(stageMs(await build(first, cacheDir), 'install'));
      colds.push(performance.now() - started);
      const second = await repo.commit({ 'STAMP.txt': `warm ${round}\n` }, `warm ${round}`);
      repo.push('main');
      const again = performance.now();
      installWarm.push(stageMs(await build(second, cacheDir), 'install'));
      warms.push(performance.now() - again);
    }
    line('warm build (new commit, caches warm)', median(warms), 'cold build (empty caches)', median(colds));
    line(
      'install, warm (same declarations)',
      median(installWarm),
      'install, cold (empty caches)',
      median(installCold),
      'warm <= 500 ms',
    );

    // 2. Checkout of a new commit from the warm object cache vs the git CLI's shallow clone of it.
    const cacheDir = join(root, 'cache-0');
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
    line(
      'checkout of a new commit, warm cache',
      median(ours),
      'git clone --depth 1 (git CLI)',
      median(cli),
      '<= 1.00',
    );

    // 3. The sandbox's cost: the same warm build with and without it, interleaved.
    const withBox: number[] = [];
    const without: number[] = [];
    for (let round = 0; round < ROUNDS; round += 1) {
      const sha = await repo.commit({ 'STAMP.txt': `sandbox ${round}\n` }, `sandbox ${round}`);
      repo.push('main');
      without.push(await time(() => build(sha, cacheDir, { enabled: false })));
      withBox.push(await time(() => build(sha, cacheDir)));
    }
    line('warm build, sandboxed', median(withBox), 'the same build, SANDBOX=off', median(without), '<= 1.05');

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
        '-r',
        'requirements.txt',
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
      const next = await repo.commit({ 'STAMP.txt': `compare ${round}\n` }, `compare ${round}`);
      repo.push('main');
      warmBuilds.push(await time(() => build(next, cacheDir)));
    }
    line(
      'warm build, end to end',
      median(warmBuilds),
      'ruff + black + pytest/coverage by hand',
      median(bareTimes),
      '<= 1.25',
    );
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
  .then(bridgeRow)
  .catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
