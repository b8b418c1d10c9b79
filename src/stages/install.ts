import { createHash } from 'node:crypto';
import { copyFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type BuildLayout, buildEnv, SANDBOX_PATHS } from '../build/layout.js';
import { readBuildFile } from '../build/readBuildFile.js';
import type { Toolchain } from '../build/toolchain.js';
import { type RunResult, runBounded } from '../host/runBounded.js';
import { CiError } from '../ops/errors.js';
import type { SandboxAccess } from '../sandbox/buildSandbox.js';
import { projectEnvironment } from './projectEnvironment.js';
import { dependencyLines, sharedEnvironment } from './sharedEnvironment.js';
import { shareProjectEnvironment, treeFiles } from './shareProjectEnvironment.js';
import type { StageContext, StageResult } from './types.js';

export interface InstallInput {
  layout: BuildLayout;
  /** The repository (without credentials): what one repository resolved is never reused by another. */
  repository: string;
  toolchain: Toolchain;
  cacheDir: string;
  /** Test extras of the project (`.[test]`), and whether there is a project to install at all. */
  extras: string[];
  /** Test dependency groups of pyproject.toml (PEP 735), resolved with everything else. */
  groups: string[];
  installable: boolean;
  /** The project's build-system requirements (its backend), installed beside its dependencies. */
  buildRequires: string[];
  timeoutMs: number;
}

export interface InstallValue {
  cacheHit: boolean;
  key: string;
  /** The shared, read-only environment the build's venv extends, when every dependency had a wheel. */
  sharedEnv?: string;
  /** The key's ready environment, bound read-only as the build's venv (no per-build venv or install at all). */
  venvDir?: string;
}

/** Files whose content decides what gets installed; any change makes a new environment key. */
const DECLARATIONS =
  /^(requirements.*\.(txt|in)|constraints.*\.txt|pyproject\.toml|setup\.py|setup\.cfg|poetry\.lock|uv\.lock|Pipfile(\.lock)?|pdm\.lock)$/;
/** Requirement files installed with -r. */
const INSTALLED_REQUIREMENTS = /^requirements([-_.](dev|test|tests|testing))?\.txt$/;
/** Messages of faults outside the commit: the package index or the network, not the declarations. */
const INFRASTRUCTURE =
  /error sending request|failed to fetch|connection (refused|reset)|timed out|dns error|temporary failure in name resolution|tcp connect error|network is unreachable|HTTP status server error|status code: 5\d\d/i;
/** A build requirement as PEP 508 writes it; anything else (an option, a newline) is not passed on. */
const REQUIREMENT = /^[A-Za-z0-9][A-Za-z0-9._\-[\], <>=!~;:'"()*+@/]*$/;

// The environment cache key: the repository, its dependency declarations, the Python version and the runner's
// pins. Only regular files count: a declaration that is a symlink is not read (it could point anywhere on the host).
export async function environmentKey(
  src: string,
  toolchain: Toolchain,
  repository: string,
): Promise<{ key: string; requirements: string[] }> {
  const names: string[] = [];
  const hash = createHash('sha256').update(
    `${toolchain.fingerprint}\n${toolchain.pluginHash}\n${toolchain.pythonVersion}\n${repository}\n`,
  );
  for (const name of (await readdir(src)).filter((n) => DECLARATIONS.test(n)).sort()) {
    // Read as a plain file only (never through a symlink), in one step: what is hashed is what was checked.
    const content = await readBuildFile(join(src, name));
    if (!content) continue;
    names.push(name);
    hash.update(`${name}\n`);
    hash.update(content);
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

type Outcome = Exclude<StageResult<InstallValue>, { outcome: 'passed' }>;

// A finished uv run as the stage's verdict: undefined when it succeeded. Network trouble is the runner's fault
// (retried); anything else is the declarations' (FAILED).
function verdict(
  result: RunResult,
  what: string,
  timeoutMs: number,
  value: InstallValue,
): Outcome | undefined {
  const durationMs = result.durationMs;
  switch (result.kind) {
    case 'canceled':
      return { outcome: 'canceled', durationMs, summary: 'canceled' };
    case 'timedOut':
      return { outcome: 'timedOut', durationMs, summary: `install exceeded ${timeoutMs} ms` };
    case 'notStarted':
      throw new CiError('PROCESS_NOT_STARTED', `uv could not start: ${result.message}`, { retriable: true });
    case 'exited':
      if (result.exitCode === 0) return undefined;
      if (INFRASTRUCTURE.test(result.stderr)) {
        throw new CiError('PACKAGE_INDEX_UNREACHABLE', `package index unreachable: ${tail(result, 3)}`, {
          retriable: true,
        });
      }
      return { outcome: 'failed', durationMs, summary: `${what}: ${tail(result, 5)}`, value };
  }
}

// What uv resolves for a new environment key: the runner's test tools, the requirement files, the project with
// its test extras, and its build backend (so the project installs offline, without build isolation).
async function writeInputs(
  input: InstallInput,
  requirements: string[],
  ctx: StageContext,
  runnerTestPins: boolean,
): Promise<string> {
  const { layout } = input;
  const lines = runnerTestPins
    ? [`-r ${ctx.sandbox.runnerFile(input.toolchain.testRequirements)}`]
    : [...PROJECT_TEST_TOOLS];
  lines.push(...requirements.map((file) => `-r ${join(layout.inside.src, file)}`));
  if (input.installable) {
    const extras = input.extras.length ? `[${input.extras.join(',')}]` : '';
    lines.push(`-e ${layout.inside.src}${extras}`);
    lines.push(...input.buildRequires.filter((r) => REQUIREMENT.test(r) && !r.startsWith('-')));
    // hatchling asks for `editables` when building an editable wheel (PEP 660's get_requires_for_build_editable),
    // which --no-build-isolation does not install by itself.
    if (input.buildRequires.some((r) => /^hatchling\b/i.test(r))) lines.push('editables');
  }
  const file = join(layout.sandbox, 'inputs.in');
  await writeFile(file, `${lines.join('\n')}\n`, { mode: 0o644 });
  return file;
}

// The oldest test tools the runner's plugin and reports work with, for a project that pins its own.
const PROJECT_TEST_TOOLS = ['pytest>=7', 'coverage>=7', 'pytest-xdist'];
// uv's answer when the project's own requirements conflict with the runner's pinned test tools.
const TEST_TOOL_CONFLICT = /you require (pytest|coverage|pytest-xdist)==/;

type SandboxedUv = (args: string[], access: SandboxAccess) => Promise<RunResult>;

// uv in the build's sandbox, on the build's checkout, within the install's time limit, output to install.log.
function sandboxedUv(input: InstallInput, ctx: StageContext): SandboxedUv {
  const { layout, toolchain } = input;
  const env = buildEnv(layout, {
    UV_CACHE_DIR: join(layout.inside.tmp, 'uv-cache'),
    UV_LINK_MODE: 'copy',
    UV_PYTHON_DOWNLOADS: 'never',
    UV_NO_PROGRESS: '1',
  });
  return (args, access) =>
    runBounded(ctx.sandbox.tool(toolchain.uv), args, {
      cwd: layout.inside.src,
      env,
      timeoutMs: input.timeoutMs,
      signal: ctx.signal,
      logFile: join(layout.reports, 'install.log'),
      launch: ctx.sandbox.launch(access),
    });
}

// Resolves the declarations to exact pins in the sandbox (the project's build backend runs there, with the internet
// but not the host): with the runner's test pins, or the project's own when they conflict with them. Returns the
// pins, or the failed outcome.
async function resolvePins(
  input: InstallInput,
  ctx: StageContext,
  requirements: string[],
  inSandbox: SandboxedUv,
  value: InstallValue,
): Promise<string | Outcome> {
  const { layout, toolchain } = input;
  const python = join(layout.inside.venv, 'bin', 'python');
  const output = join(layout.inside.out, 'pins.txt');
  ctx.log(
    `resolving ${[...requirements, input.installable ? 'the project' : ''].filter(Boolean).join(', ') || 'the runner tools'}`,
  );
  const resolve = async (runnerTestPins: boolean) => {
    const inputs = await writeInputs(input, requirements, ctx, runnerTestPins);
    return inSandbox(
      [
        'pip',
        'compile',
        '--python',
        python,
        '--no-header',
        '--no-annotate',
        '--quiet',
        '-o',
        output,
        ...input.groups.flatMap((group) => [
          '--group',
          `${join(layout.inside.src, 'pyproject.toml')}:${group}`,
        ]),
        ctx.sandbox.runnerFile(inputs),
      ],
      { venv: true, write: ['src'], network: true, files: [inputs, toolchain.testRequirements] },
    );
  };
  let compile = await resolve(true);
  if (compile.kind === 'exited' && compile.exitCode !== 0 && TEST_TOOL_CONFLICT.test(compile.stderr)) {
    // The project pins its own pytest or coverage (say pytest~=7.2): its tests are meant to run on that.
    const retry = await resolve(false);
    if (retry.kind === 'exited' && retry.exitCode === 0) {
      ctx.log(`the project pins its own test tools, which conflict with the runner's; using the project's`);
    }
    if (retry.kind !== 'exited' || retry.exitCode === 0) compile = retry;
  }
  const failed = verdict(compile, 'dependencies could not be installed as declared', input.timeoutMs, value);
  if (failed) return failed;
  const resolved = await readBuildFile(join(layout.out, 'pins.txt'), 4 * 1024 * 1024);
  return dependencyLines(resolved?.toString('utf8') ?? '', layout.inside.src);
}

// Installs the build's dependencies. A new environment key is resolved inside the sandbox (the project's build
// backend runs there, with the internet but not the host), then the runner alone builds a shared environment from
// registry wheels, read-only to every build. Each build gets its own small venv on top of it, where the project
// is installed editable, offline and sandboxed. Nothing a build does can change what another build installs.
export async function run(input: InstallInput, ctx: StageContext): Promise<StageResult<InstallValue>> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const { layout, toolchain } = input;
  const python = join(layout.inside.venv, 'bin', 'python');
  const { key, requirements } = await environmentKey(layout.src, toolchain, input.repository);
  const shared = sharedEnvironment(input.cacheDir, key, toolchain, layout.inherited);
  const value: InstallValue = { cacheHit: false, key };
  // Sandboxed builds all see their checkout at the same path, so one environment per key serves them all.
  const sandboxed = layout.inside.src === SANDBOX_PATHS.src;
  const project = sandboxed ? projectEnvironment(input.cacheDir, key, toolchain, shared) : undefined;
  const ready = await project?.ready();
  if (ready) {
    const summary = `environment ${key} from cache (shared, read-only)`;
    return {
      outcome: 'passed',
      durationMs: elapsed(),
      summary,
      value: { cacheHit: true, key, sharedEnv: ready.shared, venvDir: ready.dir },
    };
  }
  const inSandbox = sandboxedUv(input, ctx);

  // The runner prepares the venv completely before any sandboxed process may write it.
  await shared.createBuildVenv(layout.venv);
  const plugin = 'ci_runner_pytest_plugin.py';
  await copyFile(join(toolchain.pluginDir, plugin), join(shared.sitePackages(layout.venv), plugin));
  const recorded = await shared.pins();
  value.cacheHit = recorded !== undefined;
  const pins = recorded ?? (await resolvePins(input, ctx, requirements, inSandbox, value));
  if (typeof pins !== 'string') return pins;
  const sharedDir = await shared.ensure(pins, ctx.log);
  if (sharedDir) {
    value.sharedEnv = sharedDir;
    await shared.extendBuildVenv(layout.venv, ctx.sandbox.sharedEnvPath(sharedDir));
  }
  await ctx.sandbox.handOver([layout.venv]);
  if (!sharedDir) {
    // Some dependency has no wheel or is a direct reference: it is built here, in this build's sandbox only.
    const pinsFile = join(layout.sandbox, 'pins.txt');
    await writeFile(pinsFile, pins, { mode: 0o644 });
    const own = await inSandbox(
      ['pip', 'install', '--python', python, '--no-deps', '-r', ctx.sandbox.runnerFile(pinsFile)],
      { venv: true, write: ['venv', 'src'], network: true, files: [pinsFile] },
    );
    const failed = verdict(own, 'dependencies could not be installed as declared', input.timeoutMs, value);
    if (failed) return failed;
  }
  const before = project && sharedDir ? await treeFiles(layout.src).catch(() => undefined) : undefined;
  if (input.installable) {
    const extras = input.extras.length ? `[${input.extras.join(',')}]` : '';
    const installed = await inSandbox(
      [
        'pip',
        'install',
        '--python',
        python,
        '--offline',
        '--no-deps',
        '--no-build-isolation',
        '-e',
        `${layout.inside.src}${extras}`,
      ],
      { venv: true, write: ['venv', 'src'], shared: sharedDir },
    );
    const failed = verdict(installed, 'the project could not be installed', input.timeoutMs, value);
    if (failed) return failed;
  }
  if (!recorded) await shared.recordPins(pins);
  if (project && sharedDir && before) {
    const { layout } = input;
    await shareProjectEnvironment(project, before, {
      buildVenv: layout.venv,
      srcHost: layout.src,
      srcInside: layout.inside.src,
      venvInside: layout.inside.venv,
      shared: sharedDir,
      sharedInside: ctx.sandbox.sharedEnvPath(sharedDir),
      installable: input.installable,
      timeoutMs: input.timeoutMs,
      log: ctx.log,
    });
  }
  const summary = sharedDir
    ? `environment ${key} ${value.cacheHit ? 'from cache' : 'resolved and cached'}`
    : `environment ${key} installed for this build only (not every dependency has a wheel)`;
  return { outcome: 'passed', durationMs: elapsed(), summary, value };
}
