import { copyFile, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, normalize, relative } from 'node:path';
import { listBeneath, typeBeneath } from '../host/beneath.js';
import { pathExists } from '../host/pathExists.js';
import { runBounded } from '../host/runBounded.js';
import { stagingPath } from '../host/stagingPath.js';
import { SYSTEM_PATH } from '../host/systemPath.js';
import { readBuildFile } from '../pipeline/readBuildFile.js';
import { PLUGIN_FILES, type Toolchain } from '../pipeline/toolchain.js';
import type { SharedEnvironment } from './sharedEnvironment.js';

/** A ready environment for one environment key: bound read-only at the build's venv path by every later build. */
export interface ReadyEnvironment {
  /** The venv directory on the host. */
  dir: string;
  /** The shared dependency environment it extends (bound at the shared path). */
  shared: string;
}

/** What promoting a build's environment needs: where the build installed its project, as host and sandbox paths. */
export interface PromoteInput {
  /** The build's own venv (host path) after its editable install of the project. */
  buildVenv: string;
  /** The checkout as the host sees it, and as the build saw it (the fixed `/workspace`). */
  srcHost: string;
  srcInside: string;
  /** The build's venv path inside the sandbox: console scripts start `#!<venvInside>/bin/python`. */
  venvInside: string;
  /** The shared dependency environment on the host, and where builds see it. */
  shared: string;
  sharedInside: string;
  installable: boolean;
  /** The install's time limit: compiling the environment's bytecode is part of the install. */
  timeoutMs: number;
  /** Whether a path (relative to the checkout) is part of the commit, not something the install wrote. */
  inCommit: (relativePath: string) => boolean;
}

export interface ProjectEnvironment {
  ready(): Promise<ReadyEnvironment | undefined>;
  /** Whether an earlier build found this key's environment cannot be shared (and why). */
  unshareable(): Promise<string | undefined>;
  /**
   * Builds the key's environment from what the build's sandboxed editable install left, reading it as data only
   * (metadata, entry points, import paths): nothing the build wrote is copied as code. Returns why not, if not.
   */
  promote(input: PromoteInput, log: (line: string) => void): Promise<string | undefined>;
  /** Records that this key's environment is installed per build (an extension module, generated files). */
  markUnshareable(reason: string): Promise<void>;
}

const DIST_INFO = /^[A-Za-z0-9_.]+-[A-Za-z0-9_.+!]+\.dist-info$/;
const SCRIPT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const DOTTED = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;
/** Metadata files read from the build's dist-info; every other file there is ignored. */
const METADATA_FILES = ['METADATA', 'entry_points.txt', 'top_level.txt', 'direct_url.json'];

export interface EntryPoint {
  name: string;
  module: string;
  attr: string;
}

// console_scripts entries of an entry_points.txt whose names and targets are plain dotted names (anything else is
// skipped: these become scripts the runner writes).
export function consoleScripts(text: string): EntryPoint[] {
  const scripts: EntryPoint[] = [];
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const header = /^\[(.+)\]$/.exec(line);
    if (header?.[1]) {
      section = header[1].trim();
      continue;
    }
    if (section !== 'console_scripts' && section !== 'gui_scripts') continue;
    const entry = /^([^=\s]+)\s*=\s*([^:\s]+):([^\s[]+)/.exec(line);
    if (!entry?.[1] || !entry[2] || !entry[3]) continue;
    const [, name, module, attr] = entry;
    if (SCRIPT_NAME.test(name) && DOTTED.test(module) && DOTTED.test(attr))
      scripts.push({ name, module, attr });
  }
  return scripts;
}

function scriptText(python: string, entry: EntryPoint): string {
  const head = entry.attr.split('.')[0];
  return [
    `#!${python}`,
    'import sys',
    `from ${entry.module} import ${head}`,
    "if __name__ == '__main__':",
    "    if sys.argv[0].endswith('.exe'):",
    '        sys.argv[0] = sys.argv[0][:-4]',
    `    sys.exit(${entry.attr}())`,
    '',
  ].join('\n');
}

// Writes each console script as a new file in a venv's bin/ the runner made: never over an existing entry, so a
// script named like one of the venv's own (`python3`, a link to the host's interpreter) is skipped, not written
// through. Returns the names written.
export async function writeConsoleScripts(
  bin: string,
  entries: EntryPoint[],
  python: string,
): Promise<string[]> {
  const written: string[] = [];
  for (const entry of entries) {
    const done = await writeFile(join(bin, entry.name), scriptText(python, entry), {
      mode: 0o755,
      flag: 'wx',
    }).then(
      () => true,
      (error: NodeJS.ErrnoException) => {
        if (error.code === 'EEXIST') return false;
        throw error;
      },
    );
    if (done) written.push(entry.name);
  }
  return written;
}

// The import roots an editable install made: every string naming a path inside the checkout in its .pth files
// and the modules they import (setuptools' finder, `editables`). A package directory stands for its parent.
async function importRoots(
  readSite: (file: string, maxBytes: number) => Promise<Buffer | undefined>,
  record: string[],
  { srcHost, srcInside, inCommit }: PromoteInput,
): Promise<string[]> {
  const roots = new Set<string>();
  const quoted = new RegExp(
    `(?:^|['"\\s])(${srcInside.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?:/[^'"\\s,]*)?)`,
    'gm',
  );
  for (const file of record.filter((name) => !name.includes('/') && /\.(pth|py)$/.test(name))) {
    const text = (await readSite(file, 1024 * 1024))?.toString('utf8') ?? '';
    for (const match of text.matchAll(quoted)) {
      const path = normalize(match[1] as string).replace(/\/$/, '');
      const within = relative(srcInside, path);
      if (within.startsWith('..') || !inCommit(within)) continue;
      // The install may have replaced what the commit had there: nothing is followed on the way.
      const type = await typeBeneath(srcHost, within);
      if (type !== 'file' && type !== 'directory') continue;
      const isPackage =
        type === 'directory' && (await typeBeneath(srcHost, join(within, '__init__.py'))) === 'file';
      roots.add(type === 'file' || isPackage ? dirname(path) : path);
    }
  }
  return [...roots].sort();
}

// The key's environment under `<cacheDir>/envs/projects/<key>`: a venv the runner writes, extending the shared
// dependency environment, importing the project from the checkout's fixed path, with the runner's pytest plugin
// compiled beside it.
export function projectEnvironment(
  cacheDir: string,
  key: string,
  toolchain: Toolchain,
  shared: SharedEnvironment,
): ProjectEnvironment {
  const root = join(cacheDir, 'envs', 'projects');
  const dir = join(root, key);
  const marker = join(root, `${key}.unshareable`);
  return {
    async ready() {
      const sharedDir = await readFile(join(dir, '.shared'), 'utf8').catch(() => undefined);
      if (!sharedDir || !(await pathExists(join(dir, '.ready')))) return undefined;
      if (!(await pathExists(join(sharedDir.trim(), '.ready')))) return undefined;
      return { dir, shared: sharedDir.trim() };
    },
    unshareable: () => readFile(marker, 'utf8').catch(() => undefined),
    async markUnshareable(reason) {
      await mkdir(root, { recursive: true });
      await writeFile(marker, `${reason}\n`);
    },
    async promote(input, log) {
      const staging = stagingPath(dir);
      await mkdir(root, { recursive: true });
      try {
        await shared.createBuildVenv(staging);
        const site = shared.sitePackages(staging);
        await shared.extendBuildVenv(staging, input.sharedInside);
        for (const name of PLUGIN_FILES) await copyFile(join(toolchain.pluginDir, name), join(site, name));
        if (input.installable) {
          const why = await copyProject(input, site, join(staging, 'bin'), shared);
          if (why) return why;
        }
        const compiled = await runBounded(
          toolchain.basePython,
          ['-m', 'compileall', '-q', '-d', shared.sitePackages(input.venvInside), site],
          {
            cwd: staging,
            env: { PATH: SYSTEM_PATH },
            timeoutMs: input.timeoutMs,
            signal: new AbortController().signal,
          },
        );
        if (compiled.kind !== 'exited' || compiled.exitCode !== 0)
          return 'its bytecode could not be compiled';
        await writeFile(join(staging, '.shared'), `${input.shared}\n`);
        await writeFile(join(staging, '.ready'), `${new Date().toISOString()}\n`);
        await rename(staging, dir).catch(async () => {
          // Another build promoted the same key first: theirs is as good.
          if (!(await pathExists(join(dir, '.ready')))) throw new Error(`cannot move ${staging} to ${dir}`);
        });
        log(`environment ${key} is now shared read-only by later builds`);
        return undefined;
      } finally {
        await rm(staging, { recursive: true, force: true });
      }
    },
  };
}

// Writes the project's metadata, import paths and console scripts into the environment being promoted.
async function copyProject(
  input: PromoteInput,
  site: string,
  bin: string,
  shared: SharedEnvironment,
): Promise<string | undefined> {
  // The build could write its venv: everything in it is read by descriptor, never through a link it made.
  const siteWithin = relative(input.buildVenv, shared.sitePackages(input.buildVenv));
  const readSite = (file: string, maxBytes = 4 * 1024 * 1024) =>
    readBuildFile(input.buildVenv, join(siteWithin, file), maxBytes);
  if ((await typeBeneath(input.buildVenv, siteWithin)) !== 'directory')
    return 'its site-packages is not a plain directory';
  const entries = await listBeneath(input.buildVenv, siteWithin);
  const names = entries
    .filter((entry) => entry.isDirectory() && DIST_INFO.test(entry.name))
    .map((entry) => entry.name);
  for (const name of names.sort()) {
    const direct = (await readSite(join(name, 'direct_url.json')))?.toString('utf8');
    let parsed: { url?: unknown; dir_info?: { editable?: unknown } } | undefined;
    try {
      parsed = direct ? JSON.parse(direct) : undefined;
    } catch {
      parsed = undefined;
    }
    const url = typeof parsed?.url === 'string' ? parsed.url.replace(/\/$/, '') : '';
    if (url !== `file://${input.srcInside}` || parsed?.dir_info?.editable !== true) continue;
    const record = ((await readSite(join(name, 'RECORD')))?.toString('utf8') ?? '')
      .split('\n')
      .map((line) => line.split(',')[0] ?? '')
      .filter(Boolean);
    const roots = await importRoots(readSite, record, input);
    if (roots.length === 0) return 'its editable install names no import path inside the checkout';
    await mkdir(join(site, name));
    for (const file of METADATA_FILES) {
      const bytes = await readSite(join(name, file));
      if (bytes) await writeFile(join(site, name, file), bytes);
    }
    await writeFile(join(site, name, 'INSTALLER'), 'ci-runner\n');
    await writeFile(join(site, name, 'RECORD'), '');
    await writeFile(join(site, '_ci_runner_project.pth'), `${roots.join('\n')}\n`);
    const entryPoints = (await readSite(join(name, 'entry_points.txt')))?.toString('utf8') ?? '';
    await writeConsoleScripts(bin, consoleScripts(entryPoints), join(input.venvInside, 'bin', 'python'));
    return undefined;
  }
  return 'no editable install of the project was found in the build environment';
}
