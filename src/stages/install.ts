import { createHash } from 'node:crypto';
import { copyFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type BuildLayout, SANDBOX_PATHS } from '../pipeline/layout.js';
import { readBuildFile } from '../pipeline/readBuildFile.js';
import { PLUGIN_FILES, type Toolchain } from '../pipeline/toolchain.js';
import { projectEnvironment } from './projectEnvironment.js';
import { resolvePins } from './resolvePins.js';
import { sharedEnvironment } from './sharedEnvironment.js';
import { shareProjectEnvironment, treeFiles } from './shareProjectEnvironment.js';
import type { StageContext, StageResult } from './types.js';
import { sandboxedUv, verdict } from './uvRun.js';

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
    const content = await readBuildFile(src, name);
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
  for (const name of PLUGIN_FILES)
    await copyFile(join(toolchain.pluginDir, name), join(shared.sitePackages(layout.venv), name));
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
