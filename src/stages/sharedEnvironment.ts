import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathExists } from '../host/pathExists.js';
import { type RunResult, runBounded } from '../host/runBounded.js';
import { stagingPath } from '../host/stagingPath.js';
import { SYSTEM_PATH } from '../host/systemPath.js';
import { withDirLock } from '../host/withDirLock.js';
import { CiError } from '../ops/errors.js';
import type { Toolchain } from '../pipeline/toolchain.js';

/** One exact pin: the only line a shared environment is built from. */
const PIN = /^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!_-]+$/;
const BUILD_TIMEOUT_MS = 900_000;

/** The environments the runner builds from registry wheels and every build reads (never writes). */
export interface SharedEnvironment {
  /** The pins recorded for this key by an earlier build, if any. */
  pins(): Promise<string | undefined>;
  /**
   * The ready shared environment for these pins, built by the runner (outside any sandbox, wheels only, so no
   * package code runs) when new; undefined when some pin is not an exact registry version with a wheel.
   */
  ensure(pins: string, log: (line: string) => void): Promise<string | undefined>;
  /** Creates a build's own small venv (the runner does, before the build can touch it). */
  createBuildVenv(dir: string): Promise<void>;
  /** Records the pins for this key, once the build that resolved them installed them. */
  recordPins(pins: string): Promise<void>;
  /** Makes a build's venv see the shared environment's packages (after its own), at the path the build sees. */
  extendBuildVenv(venv: string, sharedSeenAt: string): Promise<void>;
  sitePackages(venv: string): string;
}

// The dependencies uv resolved, one per line: without comments and without the project itself (`-e <project>`,
// installed apart). Other editable or local requirements stay, and keep the environment out of sharing.
export function dependencyLines(text: string, project: string): string {
  const own = new RegExp(`^-e (file://)?${project.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/?(\\[.*\\])?$`);
  const lines = text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#') && !own.test(line));
  return lines.length ? `${lines.join('\n')}\n` : '';
}

// The pins as the lines a shared environment is built from, or undefined when any line is something else (a URL,
// a path, an option): those environments are only ever installed inside the build's own sandbox.
export function exactPins(text: string): string[] | undefined {
  const lines = text
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  return lines.every((line) => PIN.test(line)) ? lines : undefined;
}

function failure(result: RunResult): string {
  if (result.kind === 'notStarted') return result.message;
  if (result.kind !== 'exited') return result.kind;
  return result.stderr.trim().split('\n').slice(-3).join(' ');
}

// Shared environments under `<cacheDir>/envs`: pins recorded per environment key (`pins/<key>.txt`), environments
// per content of the pins (`<sha256>/`), so the same pins are installed once for every repository that has them.
export function sharedEnvironment(
  cacheDir: string,
  key: string,
  toolchain: Toolchain,
  inherited: Readonly<Record<string, string>>,
): SharedEnvironment {
  const root = join(cacheDir, 'envs');
  const pinsFile = join(root, 'pins', `${key}.txt`);
  const minor = toolchain.pythonVersion.split('.').slice(0, 2).join('.');
  const sitePackages = (venv: string) => join(venv, 'lib', `python${minor}`, 'site-packages');
  // The runner's own uv: its cache (only the runner writes it), no configuration files from anywhere.
  const uv = async (args: string[]) => {
    await mkdir(root, { recursive: true });
    return runBounded(toolchain.uv, args, {
      cwd: root,
      env: {
        ...inherited,
        PATH: SYSTEM_PATH,
        HOME: root,
        UV_CACHE_DIR: join(cacheDir, 'uv'),
        UV_NO_CONFIG: '1',
        UV_PYTHON_DOWNLOADS: 'never',
        UV_NO_PROGRESS: '1',
      },
      timeoutMs: BUILD_TIMEOUT_MS,
      signal: new AbortController().signal,
    });
  };

  return {
    pins: () => readFile(pinsFile, 'utf8').catch(() => undefined),
    sitePackages,
    async createBuildVenv(dir) {
      const result = await uv(['venv', '--quiet', '--python', toolchain.basePython, dir]);
      if (result.kind !== 'exited' || result.exitCode !== 0) {
        throw new CiError('ENVIRONMENT_FAULT', `creating the build environment failed: ${failure(result)}`, {
          retriable: true,
        });
      }
    },
    async extendBuildVenv(venv, sharedSeenAt) {
      const line = `import site; site.addsitedir(${JSON.stringify(sitePackages(sharedSeenAt))})\n`;
      await writeFile(join(sitePackages(venv), '_ci_runner_shared.pth'), line);
    },
    async ensure(pins, log) {
      const lines = exactPins(pins);
      if (!lines) {
        log('the resolved dependencies include a direct reference; they are installed for this build only');
        return undefined;
      }
      const text = `${lines.sort().join('\n')}\n`;
      const dir = join(
        root,
        createHash('sha256').update(`${toolchain.fingerprint}\n${text}`).digest('hex').slice(0, 24),
      );
      const noWheel = `${dir}.no-wheel`;
      if (await pathExists(join(dir, '.ready'))) return dir;
      if (await pathExists(noWheel)) return undefined;
      await mkdir(root, { recursive: true });
      return withDirLock(
        `${dir}.lock`,
        async () => {
          if (await pathExists(join(dir, '.ready'))) return dir;
          await rm(dir, { recursive: true, force: true });
          log(`building the shared environment ${dir} from ${lines.length} wheels`);
          const list = `${dir}.requirements.txt`;
          await writeFile(list, text);
          const created = await uv(['venv', '--quiet', '--python', toolchain.basePython, dir]);
          const installed =
            created.kind === 'exited' && created.exitCode === 0
              ? await uv([
                  'pip',
                  'install',
                  '--python',
                  join(dir, 'bin', 'python'),
                  '--only-binary',
                  ':all:',
                  '--no-deps',
                  '--compile-bytecode',
                  '-r',
                  list,
                ])
              : created;
          if (installed.kind !== 'exited' || installed.exitCode !== 0) {
            await rm(dir, { recursive: true, force: true });
            const reason = failure(installed);
            if (
              /no (matching|compatible) |only-binary|has no wheel|not found in the package registry|no version/i.test(
                reason,
              )
            ) {
              await writeFile(noWheel, `${reason}\n`);
              log(`no shared environment: ${reason}`);
              return undefined;
            }
            throw new CiError('ENVIRONMENT_FAULT', `building the shared environment failed: ${reason}`, {
              retriable: true,
            });
          }
          await writeFile(join(dir, '.ready'), `${new Date().toISOString()}\n`);
          return dir;
        },
        { timeoutMs: BUILD_TIMEOUT_MS },
      );
    },
    async recordPins(pins) {
      await mkdir(join(root, 'pins'), { recursive: true });
      const temporary = stagingPath(pinsFile);
      await writeFile(temporary, pins);
      await rename(temporary, pinsFile);
    },
  };
}
