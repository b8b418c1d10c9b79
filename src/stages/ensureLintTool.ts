import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Toolchain } from '../build/toolchain.js';
import { pathExists } from '../host/pathExists.js';
import { runBounded } from '../host/runBounded.js';
import { stagingPath } from '../host/stagingPath.js';
import { CiError } from '../ops/errors.js';
import { compareVersions, EXACT_VERSION, type LintTool, OLDEST_SUPPORTED } from './lintPlan.js';

/** One version of ruff or black, installed by the runner into its own tools directory (read-only to builds). */
export interface InstalledLintTool {
  /** The venv's interpreter (black runs as `python -m black`, or through the runner's driver). */
  python: string;
  /** ruff's own binary (for ruff). */
  ruff: string;
}

/** Why a pinned version cannot be used: the repository's pin, not the runner, is at fault (the build fails). */
export class PinRefused extends Error {}

const INSTALL_TIMEOUT_MS = 300_000;
/** pip's words when the index could not be reached (the runner's fault, retried), as opposed to a missing version. */
const UNREACHABLE =
  /Retrying \(|Max retries exceeded|Could not fetch URL|NewConnectionError|ConnectTimeout|ReadTimeout|Temporary failure in name resolution|Network is unreachable|Connection refused|SSLError|HTTP error 5\d\d/i;

const installing = new Map<string, Promise<InstalledLintTool>>();

function installed(dir: string): InstalledLintTool {
  return { python: join(dir, 'bin', 'python'), ruff: join(dir, 'bin', 'ruff') };
}

// A venv of the build interpreter holding exactly `tool==version` and its dependencies, from wheels only: nothing
// of the package (or of the repository) runs while it is installed.
async function install(toolchain: Toolchain, tool: LintTool, version: string, dir: string): Promise<void> {
  const staging = stagingPath(dir);
  const env = { ...toolchain.installEnv, HOME: staging, PIP_DISABLE_PIP_VERSION_CHECK: '1' };
  const run = (command: string, args: string[]) =>
    runBounded(command, args, {
      cwd: join(dir, '..'),
      env,
      timeoutMs: INSTALL_TIMEOUT_MS,
      signal: new AbortController().signal,
    });
  try {
    const venv = await run(toolchain.basePython, ['-m', 'venv', '--without-pip', staging]);
    if (venv.kind !== 'exited' || venv.exitCode !== 0) {
      throw new CiError('TOOLCHAIN_FAULT', `creating a venv for ${tool} ${version} failed`, {
        retriable: true,
      });
    }
    const pip = await run(toolchain.python, [
      '-m',
      'pip',
      '--python',
      join(staging, 'bin', 'python'),
      'install',
      '--quiet',
      '--no-input',
      '--no-cache-dir',
      '--only-binary=:all:',
      `${tool}==${version}`,
    ]);
    if (pip.kind === 'exited' && pip.exitCode === 0) {
      await writeFile(join(staging, '.ready'), `${new Date().toISOString()}\n`);
      // Another worker on this host may have installed it meanwhile: theirs is kept.
      await rename(staging, dir).catch(() => undefined);
      if (await pathExists(join(dir, '.ready'))) return;
      throw new CiError('TOOLCHAIN_FAULT', `installing ${tool} ${version} left nothing in ${dir}`, {
        retriable: true,
      });
    }
    const output = 'stderr' in pip ? `${pip.stdout}\n${pip.stderr}` : pip.message;
    if (
      pip.kind === 'exited' &&
      !UNREACHABLE.test(output) &&
      /No matching distribution|Could not find a version/.test(output)
    ) {
      throw new PinRefused(`no wheel of ${tool}==${version} on the package index`);
    }
    const last = output.trim().split('\n').slice(-2).join(' ');
    throw new CiError('PACKAGE_INDEX_UNREACHABLE', `installing ${tool} ${version} failed: ${last}`, {
      retriable: true,
    });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

// `tool` at `version`, installed once per version into the runner's tools directory (seen read-only by every
// sandbox) and reused by every later build. Only ruff and black, only exact versions the runner can run.
export async function ensureLintTool(
  toolchain: Toolchain,
  tool: LintTool,
  version: string,
): Promise<InstalledLintTool> {
  if (!EXACT_VERSION.test(version)) throw new PinRefused(`"${version}" is not an exact version`);
  if (compareVersions(version, OLDEST_SUPPORTED[tool]) < 0) {
    throw new PinRefused(
      `${tool} ${version} is older than the oldest the runner runs (${OLDEST_SUPPORTED[tool]})`,
    );
  }
  if (toolchain.lintVersions[tool] === version) {
    return { python: toolchain.python, ruff: toolchain.ruff };
  }
  const dir = join(toolchain.dir, 'pinned', `${tool}-${version}`);
  if (await pathExists(join(dir, '.ready'))) return installed(dir);
  let pending = installing.get(dir);
  if (!pending) {
    pending = mkdir(join(toolchain.dir, 'pinned'), { recursive: true })
      .then(() => install(toolchain, tool, version, dir))
      .then(() => installed(dir))
      .finally(() => installing.delete(dir));
    installing.set(dir, pending);
  }
  return pending;
}
