import { join } from 'node:path';
import type { StageLimits } from '../config.js';
import { CiError } from '../errors.js';
import { runBounded } from '../process.js';
import { type BuildLayout, buildEnv } from './layout.js';
import type { Toolchain } from './toolchain.js';
import type { StageContext, StageResult } from './types.js';

/** What a repository may set for its own builds in `[tool.ci-runner]` of its pyproject.toml. */
export interface RepoSettings {
  pytestMark: string;
  pytestArgs: string[];
  lint: boolean;
  limits: StageLimits;
}

/** What the repository declares about itself, read with its settings. */
export interface RepoFacts {
  settings: RepoSettings;
  /** Test extras the project declares (installed as `.[test]`). */
  extras: string[];
  /** pyproject/setup.py declares an installable project. */
  installable: boolean;
}

export interface SettingsInput {
  layout: BuildLayout;
  toolchain: Toolchain;
  defaults: RepoSettings;
}

const TIMEOUT_KEYS = {
  'install-timeout-sec': 'installMs',
  'lint-timeout-sec': 'lintMs',
  'test-timeout-sec': 'testMs',
} as const;

const KNOWN_KEYS = ['pytest-mark', 'pytest-args', 'lint', ...Object.keys(TIMEOUT_KEYS)];

// pytest options the runner owns: a repository may not redirect its reports, plugins or temporary directories.
const RESERVED_ARGS =
  /^(-p|-m|-o|--override-ini|--junit-?xml|--basetemp|--rootdir|--co|--collect-only|--cov.*)(=.*)?$/;

// Checks a [tool.ci-runner] table and merges it over the runner's defaults; a problem names the key at fault.
// A repository may shorten the runner's time limits, never lengthen them.
export function parseRepoSettings(raw: unknown, defaults: RepoSettings): RepoSettings | { problem: string } {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { problem: '[tool.ci-runner] must be a table' };
  }
  const table = raw as Record<string, unknown>;
  const settings: RepoSettings = {
    ...defaults,
    pytestArgs: [...defaults.pytestArgs],
    limits: { ...defaults.limits },
  };
  for (const [key, value] of Object.entries(table)) {
    const where = `[tool.ci-runner] ${key}`;
    if (!KNOWN_KEYS.includes(key))
      return { problem: `${where}: unknown key (known: ${KNOWN_KEYS.join(', ')})` };
    if (key === 'pytest-mark') {
      if (typeof value !== 'string' || !value.trim())
        return { problem: `${where}: must be a non-empty string` };
      settings.pytestMark = value;
    } else if (key === 'pytest-args') {
      if (!Array.isArray(value) || !value.every((arg) => typeof arg === 'string')) {
        return { problem: `${where}: must be an array of strings` };
      }
      const reserved = value.find((arg) => RESERVED_ARGS.test(arg));
      if (reserved)
        return { problem: `${where}: "${reserved}" is set by the runner and cannot be overridden` };
      settings.pytestArgs = value;
    } else if (key === 'lint') {
      if (typeof value !== 'boolean') return { problem: `${where}: must be true or false` };
      settings.lint = value;
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

// Reads the repository's [tool.ci-runner] table with Python's own TOML parser and validates it.
export async function run(input: SettingsInput, ctx: StageContext): Promise<StageResult<RepoFacts>> {
  const { layout } = input;
  const result = await runBounded(
    input.toolchain.python,
    [join(input.toolchain.pluginDir, 'ci_runner_settings.py')],
    {
      cwd: layout.src,
      env: buildEnv(layout),
      timeoutMs: 30_000,
      signal: ctx.signal,
    },
  );
  if (result.kind === 'canceled')
    return { outcome: 'canceled', durationMs: result.durationMs, summary: 'canceled' };
  if (result.kind !== 'exited' || result.exitCode !== 0) {
    throw new CiError('RUNNER_FAULT', 'reading [tool.ci-runner] failed', { retriable: true });
  }
  const durationMs = result.durationMs;
  const parsed = JSON.parse(result.stdout) as {
    settings?: unknown;
    extras?: string[];
    installable?: boolean;
    error?: string;
  };
  const fallback: RepoFacts = { settings: input.defaults, extras: [], installable: false };
  if (parsed.error) return { outcome: 'failed', durationMs, summary: parsed.error, value: fallback };
  const settings = parseRepoSettings(parsed.settings ?? {}, input.defaults);
  if ('problem' in settings)
    return { outcome: 'failed', durationMs, summary: settings.problem, value: fallback };
  const custom = Object.keys(parsed.settings ?? {});
  const summary = custom.length ? `repository sets ${custom.join(', ')}` : 'runner defaults';
  const value = { settings, extras: parsed.extras ?? [], installable: parsed.installable ?? false };
  return { outcome: 'passed', durationMs, summary, value };
}
