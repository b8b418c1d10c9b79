import { createHash } from 'node:crypto';
import { copyFile, mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CiError } from '../errors.js';
import { pathExists } from '../pathExists.js';
import { type RunResult, runBounded } from '../process.js';
import { type BuildLayout, buildEnv } from './layout.js';
import type { Toolchain } from './toolchain.js';
import type { StageContext, StageResult } from './types.js';

export interface InstallInput {
  layout: BuildLayout;
  toolchain: Toolchain;
  cacheDir: string;
  /** Test extras of the project (`.[test]`), and whether there is a project to install at all. */
  extras: string[];
  installable: boolean;
  timeoutMs: number;
}

export interface InstallValue {
  cacheHit: boolean;
  key: string;
}

/** Files whose content decides what gets installed; any change makes a new environment key. */
const DECLARATIONS =
  /^(requirements.*\.(txt|in)|constraints.*\.txt|pyproject\.toml|setup\.py|setup\.cfg|poetry\.lock|uv\.lock|Pipfile(\.lock)?|pdm\.lock)$/;
/** Requirement files installed with -r. */
const INSTALLED_REQUIREMENTS = /^requirements([-_.](dev|test|tests|testing))?\.txt$/;
/** Messages of faults outside the commit: the package index or the network, not the declarations. */
const INFRASTRUCTURE =
  /error sending request|failed to fetch|connection (refused|reset)|timed out|dns error|temporary failure in name resolution|tcp connect error|network is unreachable|HTTP status server error|status code: 5\d\d/i;

// The environment cache key: the repository's dependency declarations, the Python version and the runner's pins.
export async function environmentKey(
  src: string,
  toolchain: Toolchain,
): Promise<{ key: string; requirements: string[] }> {
  const names = (await readdir(src)).filter((name) => DECLARATIONS.test(name)).sort();
  const hash = createHash('sha256').update(`${toolchain.fingerprint}\n${toolchain.pythonVersion}\n`);
  for (const name of names) {
    hash.update(`${name}\n`);
    hash.update(await readFile(join(src, name)));
    hash.update('\n');
  }
  return {
    key: hash.digest('hex').slice(0, 24),
    requirements: names.filter((name) => INSTALLED_REQUIREMENTS.test(name)),
  };
}

function tail(result: RunResult, lines = 8): string {
  if (result.kind === 'notStarted') return result.message;
  return result.stderr.trim().split('\n').slice(-lines).join('\n');
}

// Installs the build's dependencies into its own new venv with uv (copying from uv's cache, never linking, so a
// test cannot alter what later builds get). A key seen before installs its frozen list offline; a new key resolves
// and saves the frozen list only after the install succeeded.
export async function run(input: InstallInput, ctx: StageContext): Promise<StageResult<InstallValue>> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const { layout, toolchain } = input;
  const python = join(layout.venv, 'bin', 'python');
  const env = buildEnv(layout, {
    UV_CACHE_DIR: join(input.cacheDir, 'uv'),
    UV_LINK_MODE: 'copy',
    UV_PYTHON_DOWNLOADS: 'never',
    UV_NO_PROGRESS: '1',
  });
  const uv = (args: string[], timeoutMs = input.timeoutMs) =>
    runBounded(toolchain.uv, args, {
      cwd: layout.src,
      env,
      timeoutMs,
      signal: ctx.signal,
      logFile: join(layout.reports, 'install.log'),
    });
  const { key, requirements } = await environmentKey(layout.src, toolchain);
  const frozenFile = join(input.cacheDir, 'envs', `${key}.txt`);
  const extras = input.extras.length ? `[${input.extras.join(',')}]` : '';
  const project = input.installable ? `.${extras}` : undefined;

  const venv = await uv(['venv', '--quiet', '--python', toolchain.basePython, layout.venv], 60_000);
  if (venv.kind !== 'exited' || venv.exitCode !== 0) {
    throw new CiError('RUNNER_FAULT', `creating the build environment failed: ${tail(venv)}`, {
      retriable: true,
    });
  }
  // The runner's pytest plugin goes into site-packages, where coverage does not measure it.
  const minor = toolchain.pythonVersion.split('.').slice(0, 2).join('.');
  const plugin = 'ci_runner_pytest_plugin.py';
  await copyFile(
    join(toolchain.pluginDir, plugin),
    join(layout.venv, 'lib', `python${minor}`, 'site-packages', plugin),
  );
  if (await pathExists(frozenFile)) {
    const warm = await uv(['pip', 'install', '--python', python, '--offline', '--no-deps', '-r', frozenFile]);
    const warmed = warm.kind === 'exited' && warm.exitCode === 0;
    const editable =
      warmed && project
        ? await uv(['pip', 'install', '--python', python, '--offline', '--no-deps', '-e', project])
        : warm;
    if (editable.kind === 'exited' && editable.exitCode === 0) {
      const value = { cacheHit: true, key };
      return { outcome: 'passed', durationMs: elapsed(), summary: `environment ${key} from cache`, value };
    }
    if (editable.kind === 'canceled')
      return { outcome: 'canceled', durationMs: elapsed(), summary: 'canceled' };
    ctx.log(`cached environment ${key} could not be installed offline; resolving again`);
  }

  const args = ['-r', toolchain.testRequirements, ...requirements.flatMap((file) => ['-r', file])];
  if (project) args.push('-e', project);
  ctx.log(`resolving and installing: ${args.join(' ')}`);
  const cold = await uv(['pip', 'install', '--python', python, ...args]);
  const value = { cacheHit: false, key };
  switch (cold.kind) {
    case 'canceled':
      return { outcome: 'canceled', durationMs: elapsed(), summary: 'canceled' };
    case 'timedOut':
      return {
        outcome: 'timedOut',
        durationMs: elapsed(),
        summary: `install exceeded ${input.timeoutMs} ms`,
      };
    case 'notStarted':
      throw new CiError('RUNNER_FAULT', `uv could not start: ${cold.message}`, { retriable: true });
    case 'exited':
      if (cold.exitCode !== 0) {
        if (INFRASTRUCTURE.test(cold.stderr)) {
          throw new CiError('RUNNER_FAULT', `package index unreachable: ${tail(cold, 3)}`, {
            retriable: true,
          });
        }
        const summary = `dependencies could not be installed as declared: ${tail(cold, 5)}`;
        return { outcome: 'failed', durationMs: elapsed(), summary, value };
      }
  }
  await saveFrozen(uv, python, frozenFile);
  return {
    outcome: 'passed',
    durationMs: elapsed(),
    summary: `environment ${key} resolved and cached`,
    value,
  };
}

// Records exactly what was installed (without the project itself) as the cache entry, atomically.
async function saveFrozen(
  uv: (args: string[]) => Promise<RunResult>,
  python: string,
  file: string,
): Promise<void> {
  const freeze = await uv(['pip', 'freeze', '--python', python]);
  if (freeze.kind !== 'exited' || freeze.exitCode !== 0) return;
  const pinned = freeze.stdout
    .split('\n')
    .filter((line) => line.trim() && !line.startsWith('-e ') && !line.includes(' @ file:'));
  await mkdir(join(file, '..'), { recursive: true });
  const temporary = `${file}.tmp-${process.pid}-${Date.now()}`;
  await writeFile(temporary, `${pinned.join('\n')}\n`);
  await rename(temporary, file);
}
