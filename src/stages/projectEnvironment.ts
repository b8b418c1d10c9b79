import {
  copyFile,
  lstat,
  mkdir,
  readdir,
  readFile,
  realpath,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { dirname, join, normalize, relative } from 'node:path';
import { readBuildFile } from '../build/readBuildFile.js';
import type { Toolchain } from '../build/toolchain.js';
import { pathExists } from '../host/pathExists.js';
import { runBounded } from '../host/runBounded.js';
import { stagingPath } from '../host/stagingPath.js';
import { SYSTEM_PATH } from '../host/systemPath.js';
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

interface EntryPoint {
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

// The import roots an editable install made: every string naming a path inside the checkout in its .pth files
// and the modules they import (setuptools' finder, `editables`). A package directory stands for its parent.
async function importRoots(
  sitePackages: string,
  record: string[],
  { srcHost, srcInside, inCommit }: PromoteInput,
): Promise<string[]> {
  const roots = new Set<string>();
  const quoted = new RegExp(
    `(?:^|['"\\s])(${srcInside.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?:/[^'"\\s,]*)?)`,
    'gm',
  );
  for (const file of record.filter((name) => !name.includes('/') && /\.(pth|py)$/.test(name))) {
    const text = (await readBuildFile(join(sitePackages, file), 1024 * 1024))?.toString('utf8') ?? '';
    for (const match of text.matchAll(quoted)) {
      const path = normalize(match[1] as string).replace(/\/$/, '');
      const within = relative(srcInside, path);
      if (within.startsWith('..') || !inCommit(within)) continue;
      const host = join(srcHost, within);
      const info = await stat(host).catch(() => undefined);
      if (!info) continue;
      const isPackage = info.isDirectory() && (await pathExists(join(host, '__init__.py')));
      roots.add(info.isFile() || isPackage ? dirname(path) : path);
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
        const plugin = 'ci_runner_pytest_plugin.py';
        await copyFile(join(toolchain.pluginDir, plugin), join(site, plugin));
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
  const buildSite = shared.sitePackages(input.buildVenv);
  // The build could write its venv: nothing is read through a link it made.
  const expected = shared.sitePackages(await realpath(input.buildVenv));
  if ((await realpath(buildSite).catch(() => '')) !== expected)
    return 'its site-packages is not a plain directory';
  const names = (await readdir(buildSite).catch(() => [] as string[])).filter((name) => DIST_INFO.test(name));
  for (const name of names) {
    if (!(await lstat(join(buildSite, name))).isDirectory()) continue;
    const direct = (await readBuildFile(join(buildSite, name, 'direct_url.json')))?.toString('utf8');
    let parsed: { url?: unknown; dir_info?: { editable?: unknown } } | undefined;
    try {
      parsed = direct ? JSON.parse(direct) : undefined;
    } catch {
      parsed = undefined;
    }
    const url = typeof parsed?.url === 'string' ? parsed.url.replace(/\/$/, '') : '';
    if (url !== `file://${input.srcInside}` || parsed?.dir_info?.editable !== true) continue;
    const record = ((await readBuildFile(join(buildSite, name, 'RECORD')))?.toString('utf8') ?? '')
      .split('\n')
      .map((line) => line.split(',')[0] ?? '')
      .filter(Boolean);
    const roots = await importRoots(buildSite, record, input);
    if (roots.length === 0) return 'its editable install names no import path inside the checkout';
    await mkdir(join(site, name));
    for (const file of METADATA_FILES) {
      const bytes = await readBuildFile(join(buildSite, name, file), 4 * 1024 * 1024);
      if (bytes) await writeFile(join(site, name, file), bytes);
    }
    await writeFile(join(site, name, 'INSTALLER'), 'ci-runner\n');
    await writeFile(join(site, name, 'RECORD'), '');
    await writeFile(join(site, '_ci_runner_project.pth'), `${roots.join('\n')}\n`);
    const entryPoints =
      (await readBuildFile(join(buildSite, name, 'entry_points.txt')))?.toString('utf8') ?? '';
    for (const entry of consoleScripts(entryPoints)) {
      await writeFile(join(bin, entry.name), scriptText(join(input.venvInside, 'bin', 'python'), entry), {
        mode: 0o755,
      });
    }
    return undefined;
  }
  return 'no editable install of the project was found in the build environment';
}
