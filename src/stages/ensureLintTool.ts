import { mkdir, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathExists } from '../host/pathExists.js';
import { runBounded } from '../host/runBounded.js';
import { stagingPath } from '../host/stagingPath.js';
import { CiError } from '../ops/errors.js';
import type { Toolchain } from '../pipeline/toolchain.js';
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
/** One pip at a time per worker process: a repository cycling through versions queues behind itself. */
let queue: Promise<unknown> = Promise.resolve();

/** Pinned versions kept per toolchain (the least recently used beyond it are removed, once unused for a while). */
const KEEP_VERSIONS = 16;
const IN_USE_MS = 30 * 60_000;

// Removes the least recently used pinned versions beyond KEEP_VERSIONS (none used in the last IN_USE_MS, so no
// running build loses its tool) and staging directories a killed worker left (older than IN_USE_MS).
async function prune(pinned: string): Promise<void> {
  const now = Date.now();
  const entries = await readdir(pinned).catch(() => [] as string[]);
  const ready: Array<{ name: string; used: number }> = [];
  for (const name of entries) {
    const used = (await stat(join(pinned, name, '.ready')).catch(() => undefined))?.mtimeMs;
    if (used !== undefined) ready.push({ name, used });
    else if (name.includes('.tmp-')) {
      const age = now - ((await stat(join(pinned, name)).catch(() => undefined))?.mtimeMs ?? now);
      if (age > IN_USE_MS) await rm(join(pinned, name), { recursive: true, force: true });
    }
  }
  ready.sort((a, b) => b.used - a.used);
  for (const { name, used } of ready.slice(KEEP_VERSIONS)) {
    if (now - used > IN_USE_MS) await rm(join(pinned, name), { recursive: true, force: true });
  }
}

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
      // `===`: exactly that version, never a local build (`+local`) an index might also hold.
      `${tool}===${version}`,
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
    // pip may quote the index URL, credentials and all.
    const last = output
      .trim()
      .split('\n')
      .slice(-2)
      .join(' ')
      .replace(/\/\/[^/\s@]+@/g, '//');
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
  const pinned = join(toolchain.dir, 'pinned');
  const dir = join(pinned, `${tool}-${version}`);
  if (await pathExists(join(dir, '.ready'))) {
    // Its last use, for pruning.
    const now = new Date();
    await utimes(join(dir, '.ready'), now, now).catch(() => undefined);
    return installed(dir);
  }
  let pending = installing.get(dir);
  if (!pending) {
    const next = queue.then(async () => {
      await mkdir(pinned, { recursive: true });
      if (!(await pathExists(join(dir, '.ready')))) await install(toolchain, tool, version, dir);
      await prune(pinned).catch(() => undefined);
      return installed(dir);
    });
    queue = next.catch(() => undefined);
    pending = next.finally(() => installing.delete(dir));
    installing.set(dir, pending);
  }
  return pending;
}
