import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { runBounded } from '../host/runBounded.js';
import { stagingPath } from '../host/stagingPath.js';
import type { BuildResources, StageLimits } from '../ops/config.js';
import { CiError } from '../ops/errors.js';
import { type BuildLayout, buildEnv } from '../pipeline/layout.js';
import type { Toolchain } from '../pipeline/toolchain.js';
import { type Formatter, type LintProfile, parseLintProfile } from './lintPlan.js';
import { readerKey } from './readerKey.js';
import type { StageContext, StageResult } from './types.js';

/** What a repository may set for its own builds in `[tool.ci-runner]` of its pyproject.toml. */
export interface RepoSettings {
  /** The mark expression that narrows the tests, if the repository declares its marks ("" for none). */
  pytestMark: string;
  pytestArgs: string[];
  lint: boolean;
  /** The formatter lint runs; unset: the one the repository's own files name (see lintPlan). */
  formatter?: Formatter;
  /** pytest-xdist workers for the tests (1: one process, no xdist). */
  testWorkers: number;
  /** Re-runs of failed tests (FLAKY_RERUNS, which a repository may lower). */
  flakyReruns: number;
  /** Which tests run: all, or only those a change can affect (pytest-testmon's data from an earlier build). */
  select: 'all' | 'affected';
  limits: StageLimits;
  resources: BuildResources;
}

/** What the repository declares about itself, read with its settings. */
export interface RepoFacts {
  settings: RepoSettings;
  /** Test extras the project declares (installed as `.[test]`). */
  extras: string[];
  /** Test dependency groups (PEP 735 `[dependency-groups]` test, tests, testing, dev). */
  groups: string[];
  /** pyproject/setup.py declares an installable project. */
  installable: boolean;
  /** Its build backend's requirements ([build-system] requires, or setuptools for a legacy project). */
  buildRequires: string[];
  /** What its own files say about its lint: formatter, pinned ruff/black versions. */
  lint: LintProfile;
}

export interface SettingsInput {
  layout: BuildLayout;
  toolchain: Toolchain;
  defaults: RepoSettings;
  /** Where what the reader said about a pyproject.toml is kept, keyed by the repository and its content. */
  cacheDir: string;
  /** The repository (without credentials): one repository's answers are never another's. */
  repository: string;
  timeoutMs: number;
}

const TIMEOUT_KEYS = {
  'install-timeout-sec': 'installMs',
  'lint-timeout-sec': 'lintMs',
  'test-timeout-sec': 'testMs',
  'coverage-timeout-sec': 'coverageMs',
  'artefact-timeout-sec': 'artefactMs',
} as const;

const RESOURCE_KEYS = {
  'memory-mb': 'memoryMb',
  'disk-mb': 'diskMb',
  'max-processes': 'maxProcesses',
  'file-size-mb': 'fileSizeMb',
  'open-files': 'openFiles',
  'cpu-sec': 'cpuSec',
} as const;

/**
 * The least a repository may lower each resource to (the runner's own minimums): below them the sandbox itself could
 * not start, and a build would pass its own failure off as the runner's.
 */
const RESOURCE_MINIMUMS = {
  memoryMb: 64,
  diskMb: 64,
  maxProcesses: 16,
  fileSizeMb: 1,
  openFiles: 64,
  cpuSec: 1,
} as const;

const KNOWN_KEYS = [
  'pytest-mark',
  'pytest-args',
  'lint',
  'formatter',
  'test-workers',
  'flaky-reruns',
  'select',
  ...Object.keys(TIMEOUT_KEYS),
  ...Object.keys(RESOURCE_KEYS),
];

// pytest options the runner owns: a repository may not redirect its reports, plugins or temporary directories.
const RESERVED_ARGS =
  /^(-p|-m|-o|--override-ini|--junit-?xml|--basetemp|--rootdir|--co|--collect-only|--cov.*)(=.*)?$/;

// Checks a [tool.ci-runner] table and merges it over the runner's defaults; a problem names the key at fault.
// A repository may shorten the runner's time limits and lower its resource limits, never raise them.
export function parseRepoSettings(raw: unknown, defaults: RepoSettings): RepoSettings | { problem: string } {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { problem: '[tool.ci-runner] must be a table' };
  }
  const table = raw as Record<string, unknown>;
  const settings: RepoSettings = {
    ...defaults,
    pytestArgs: [...defaults.pytestArgs],
    limits: { ...defaults.limits },
    resources: { ...defaults.resources },
  };
  for (const [key, value] of Object.entries(table)) {
    const where = `[tool.ci-runner] ${key}`;
    if (!KNOWN_KEYS.includes(key))
      return { problem: `${where}: unknown key (known: ${KNOWN_KEYS.join(', ')})` };
    if (key === 'pytest-mark') {
      // "" runs the repository's own selection, with no mark of the runner's.
      if (typeof value !== 'string') return { problem: `${where}: must be a string` };
      settings.pytestMark = value.trim();
    } else if (key === 'formatter') {
      if (value !== 'black' && value !== 'ruff' && value !== 'none')
        return { problem: `${where}: must be "black", "ruff" or "none"` };
      settings.formatter = value;
    } else if (key === 'pytest-args') {
      if (!Array.isArray(value) || !value.every((arg) => typeof arg === 'string')) {
        return { problem: `${where}: must be an array of strings` };
      }
      const reserved = value.find((arg) => RESERVED_ARGS.test(arg));
      if (reserved)
        return { problem: `${where}: "${reserved}" is set by the runner and cannot be overridden` };
      settings.pytestArgs = value;
    } else if (key === 'test-workers') {
      // "auto": one per CPU the runner has; a number is capped by the same (more would only queue).
      const cpus = availableParallelism();
      if (value === 'auto') settings.testWorkers = cpus;
      else if (typeof value === 'number' && Number.isInteger(value) && value >= 1)
        settings.testWorkers = Math.min(value, cpus);
      else return { problem: `${where}: must be "auto" or a whole number (at least 1)` };
    } else if (key === 'flaky-reruns') {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0)
        return { problem: `${where}: must be a whole number (0 disables re-runs)` };
      settings.flakyReruns = Math.min(value, defaults.flakyReruns);
    } else if (key === 'select') {
      if (value !== 'all' && value !== 'affected')
        return { problem: `${where}: must be "all" or "affected"` };
      settings.select = value;
    } else if (key === 'lint') {
      if (typeof value !== 'boolean') return { problem: `${where}: must be true or false` };
      settings.lint = value;
    } else if (key in RESOURCE_KEYS) {
      const resource = RESOURCE_KEYS[key as keyof typeof RESOURCE_KEYS];
      const least = RESOURCE_MINIMUMS[resource];
      if (typeof value !== 'number' || !Number.isInteger(value) || value < least) {
        return { problem: `${where}: must be a whole number (at least ${least})` };
      }
      settings.resources[resource] = Math.min(value, defaults.resources[resource]);
    } else {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
        return { problem: `${where}: must be a whole number of seconds (at least 1)` };
      }
      const limit = TIMEOUT_KEYS[key as keyof typeof TIMEOUT_KEYS];
      settings.limits[limit] = Math.min(value * 1000, defaults.limits[limit]);
    }
  }
  return settings;
}

// Reads the repository's [tool.ci-runner] table with Python's own TOML parser, in the sandbox (the file is the
// repository's), and validates it.
export async function run(input: SettingsInput, ctx: StageContext): Promise<StageResult<RepoFacts>> {
  const { layout } = input;
  const script = join(input.toolchain.pluginDir, 'ci_runner_settings.py');
  const profileScript = join(input.toolchain.pluginDir, 'ci_runner_lint_profile.py');
  // The same pyproject.toml read before: its answer, without starting Python.
  const key = await readerKey(layout.src, [script, profileScript], input.repository);
  const cacheFile = key ? join(input.cacheDir, 'settings', `${key}.json`) : undefined;
  const known = cacheFile ? await readFile(cacheFile, 'utf8').catch(() => undefined) : undefined;
  if (known) ctx.log('this pyproject.toml was read before: its answer comes from the cache');
  const result = known
    ? { kind: 'exited' as const, exitCode: 0, stdout: known, stderr: '', durationMs: 0 }
    : await runBounded(ctx.sandbox.tool(input.toolchain.python), [ctx.sandbox.runnerFile(script)], {
        cwd: layout.inside.src,
        env: buildEnv(layout),
        timeoutMs: input.timeoutMs,
        signal: ctx.signal,
        logFile: join(layout.reports, 'settings.log'),
        launch: ctx.sandbox.launch({ files: [script, profileScript] }),
      });
  const fallback: RepoFacts = {
    settings: input.defaults,
    extras: [],
    groups: [],
    installable: false,
    buildRequires: [],
    lint: parseLintProfile(undefined),
  };
  const durationMs = result.durationMs;
  if (result.kind === 'canceled') return { outcome: 'canceled', durationMs, summary: 'canceled' };
  if (result.kind === 'notStarted') {
    throw new CiError('PROCESS_NOT_STARTED', `reading [tool.ci-runner] failed: ${result.message}`, {
      retriable: true,
    });
  }
  if (result.kind === 'timedOut') {
    return {
      outcome: 'failed',
      durationMs,
      summary: `reading pyproject.toml took over ${input.timeoutMs} ms`,
      value: fallback,
    };
  }
  let parsed: {
    settings?: unknown;
    extras?: string[];
    groups?: string[];
    installable?: boolean;
    build_requires?: string[];
    lint?: unknown;
    error?: string;
  };
  try {
    parsed = result.exitCode === 0 ? JSON.parse(result.stdout) : {};
  } catch {
    // An answer that does not parse is no answer: never the runner's defaults in place of the repository's settings.
    parsed = { error: "the repository's settings could not be read (the reader's answer was not JSON)" };
  }
  if (!known && cacheFile && result.exitCode === 0 && !parsed?.error) {
    await keep(cacheFile, result.stdout).catch(() => undefined);
  }
  if (result.exitCode !== 0 || typeof parsed !== 'object' || parsed === null) {
    const last = result.stderr.trim().split('\n').slice(-1)[0] ?? '';
    return {
      outcome: 'failed',
      durationMs,
      summary: `pyproject.toml could not be read: ${last}`,
      value: fallback,
    };
  }
  if (parsed.error) return { outcome: 'failed', durationMs, summary: parsed.error, value: fallback };
  const settings = parseRepoSettings(parsed.settings ?? {}, input.defaults);
  if ('problem' in settings)
    return { outcome: 'failed', durationMs, summary: settings.problem, value: fallback };
  const custom = Object.keys(parsed.settings ?? {});
  const summary = custom.length ? `repository sets ${custom.join(', ')}` : 'runner defaults';
  const value: RepoFacts = {
    settings,
    extras: parsed.extras ?? [],
    groups: parsed.groups ?? [],
    installable: parsed.installable ?? false,
    buildRequires: parsed.build_requires ?? [],
    lint: parseLintProfile(parsed.lint),
  };
  return { outcome: 'passed', durationMs, summary, value };
}

async function keep(file: string, text: string): Promise<void> {
  await mkdir(join(file, '..'), { recursive: true });
  const temporary = stagingPath(file);
  await writeFile(temporary, text);
  await rename(temporary, file);
}
