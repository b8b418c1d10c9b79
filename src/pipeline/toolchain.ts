import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pathExists } from '../host/pathExists.js';
import { runBounded } from '../host/runBounded.js';
import { stagingPath } from '../host/stagingPath.js';
import { CiError } from '../ops/errors.js';
import type { Logger } from '../ops/logger.js';

/** The runner's own pinned Python tools, shared read-only by every build. */
export interface Toolchain {
  /** The interpreter builds run on: exactly the configured PYTHON, resolved to its real executable. */
  basePython: string;
  pythonVersion: string;
  /** The interpreter's installation (sys.base_prefix): what sandboxes must be able to read. */
  pythonPrefix: string;
  dir: string;
  /** The tools venv's interpreter; tools run as `python -m pip|black|ruff` so the venv may be moved. */
  python: string;
  /** uv's own binary from the tools venv (a real executable, unaffected by the venv's location). */
  uv: string;
  /** ruff's own binary from the tools venv (what `python -m ruff` would start, without a Python start-up). */
  ruff: string;
  testRequirements: string;
  /** pytest-testmon, for builds that run only affected tests (on their PYTHONPATH, not in any environment). */
  testmonDir: string;
  pluginDir: string;
  /** Hash of everything that makes environments built with this toolchain differ. */
  fingerprint: string;
  /** Hash of the runner's pytest plugin, which every project environment holds a copy of. */
  pluginHash: string;
  /** The runner's own ruff and black versions (requirements-tools.txt): what lint runs unless a repository pins. */
  lintVersions: { ruff: string; black: string };
  /** What installing tools may use from the host (PATH, package index, proxies, TLS trust). */
  installEnv: Readonly<Record<string, string>>;
}

// `name==version` of requirements-tools.txt.
function pinned(requirements: string, name: string): string {
  const match = new RegExp(`^${name}==(\\S+)$`, 'm').exec(requirements);
  if (!match?.[1])
    throw new CiError('TOOLCHAIN_FAULT', `requirements-tools.txt pins no ${name}`, { retriable: false });
  return match[1];
}

const PYTHON_DIR = fileURLToPath(new URL('../../python/', import.meta.url));
/** The runner's Python modules every build environment holds beside the project (in its site-packages). */
export const PLUGIN_FILES = ['ci_runner_pytest_plugin.py', 'ci_runner_coverage_cache.py'];
/** The runner's modules a run with `select = "affected"` loads (from the runner's files, not the environment). */
export const AFFECTED_FILES = [
  'ci_runner_affected.py',
  'ci_runner_affected_data.py',
  'ci_runner_affected_blocks.py',
  'ci_runner_affected_failures.py',
];

// What changes when the runner's modules in build environments change (a ready environment made before is stale).
async function pluginHash(): Promise<string> {
  const hash = createHash('sha256');
  for (const name of [...PLUGIN_FILES, ...AFFECTED_FILES])
    hash.update(await readFile(join(PYTHON_DIR, name)));
  return hash.digest('hex').slice(0, 16);
}
const INSTALL_TIMEOUT_MS = 600_000;

interface Interpreter {
  version: string;
  executable: string;
  prefix: string;
}

// What PYTHON really is: a launcher such as pyenv's shim resolves to the interpreter it starts.
async function interpreter(basePython: string, env: Record<string, string>): Promise<Interpreter> {
  const script =
    'import os, sys; print(sys.version.split()[0]); print(os.path.realpath(sys.executable)); print(sys.base_prefix)';
  const result = await runBounded(basePython, ['-c', script], {
    cwd: '/',
    env,
    timeoutMs: 30_000,
    signal: new AbortController().signal,
  });
  if (result.kind !== 'exited' || result.exitCode !== 0) {
    throw new CiError('TOOLCHAIN_FAULT', `cannot run Python at "${basePython}"`, { retriable: false });
  }
  const [version = '', executable = '', prefix = ''] = result.stdout.trim().split('\n');
  return { version, executable, prefix };
}

async function install(
  basePython: string,
  target: string,
  requirements: string,
  affected: string,
  host: Record<string, string>,
) {
  const env = { ...host, HOME: target, PIP_DISABLE_PIP_VERSION_CHECK: '1' };
  const pip = [join(target, 'bin', 'python'), '-m', 'pip', 'install', '--quiet'] as const;
  const steps: Array<[string, string[]]> = [
    [basePython, ['-m', 'venv', target]],
    [pip[0], [...pip.slice(1), '-r', requirements]],
    [pip[0], [...pip.slice(1), '--no-deps', '--target', join(target, 'affected'), '-r', affected]],
  ];
  for (const [command, args] of steps) {
    const result = await runBounded(command, args, {
      cwd: dirname(target),
      env,
      timeoutMs: INSTALL_TIMEOUT_MS,
      signal: new AbortController().signal,
    });
    if (result.kind !== 'exited' || result.exitCode !== 0) {
      const detail = 'stderr' in result ? result.stderr.slice(-2000) : result.message;
      throw new CiError('TOOLCHAIN_FAULT', `installing the runner's Python tools failed: ${detail}`, {
        retriable: true,
      });
    }
  }
}

/** What installing the toolchain may use from the host: its PATH and the operator's pass-through variables. */
export interface HostEnv {
  path: string;
  inherited: Readonly<Record<string, string>>;
}

// Installs the pinned lint tools and pip once per (Python version, pins) under cacheDir; later calls reuse them.
export async function ensureToolchain(
  basePython: string,
  cacheDir: string,
  logger: Logger,
  host: HostEnv,
): Promise<Toolchain> {
  const env = { ...host.inherited, PATH: host.path };
  const python = await interpreter(basePython, env);
  const version = python.version;
  const toolsFile = join(PYTHON_DIR, 'requirements-tools.txt');
  const testFile = join(PYTHON_DIR, 'requirements-test.txt');
  const affectedFile = join(PYTHON_DIR, 'requirements-affected.txt');
  const pins = await Promise.all([toolsFile, testFile, affectedFile].map((file) => readFile(file, 'utf8')));
  const tools = pins[0] ?? '';
  const fingerprint = createHash('sha256')
    .update(`${version}\n${python.executable}\n${pins.join('\n')}`)
    .digest('hex')
    .slice(0, 16);
  const dir = join(cacheDir, 'tools', fingerprint);
  if (!(await pathExists(join(dir, '.ready')))) {
    logger.info({ dir, python: version }, 'installing the runner Python tools (once per version set)');
    await mkdir(join(cacheDir, 'tools'), { recursive: true });
    const staging = stagingPath(dir);
    await install(python.executable, staging, toolsFile, affectedFile, env);
    await writeFile(join(staging, '.ready'), `${new Date().toISOString()}\n`);
    try {
      await rename(staging, dir);
    } catch {
      await rm(staging, { recursive: true, force: true });
    }
  }
  return {
    basePython: python.executable,
    pythonVersion: version,
    pythonPrefix: python.prefix,
    dir,
    python: join(dir, 'bin', 'python'),
    uv: join(dir, 'bin', 'uv'),
    ruff: join(dir, 'bin', 'ruff'),
    testRequirements: testFile,
    testmonDir: join(dir, 'affected'),
    pluginDir: PYTHON_DIR,
    fingerprint,
    pluginHash: await pluginHash(),
    lintVersions: { ruff: pinned(tools, 'ruff'), black: pinned(tools, 'black') },
    installEnv: env,
  };
}
