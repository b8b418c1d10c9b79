import type { BuildReport } from '../delivery/contracts.js';
import type { BuildResources, CheckoutCaps, GitCredentials, StageLimits } from '../ops/config.js';
import type { BuildSandbox } from '../sandbox/buildSandbox.js';
import type * as artefact from '../stages/artefact.js';
import type { BytecodePlan } from '../stages/bytecodeCache.js';
import type * as checkout from '../stages/checkout.js';
import type * as coverage from '../stages/coverage.js';
import type * as install from '../stages/install.js';
import type * as lint from '../stages/lint.js';
import type * as settings from '../stages/settings.js';
import type * as test from '../stages/test.js';
import type { TestSelection } from '../stages/testSelection.js';
import type { StageContext, StageName, StageResult } from '../stages/types.js';
import type { BuildInput } from './buildInput.js';
import type { BuildLayout } from './layout.js';
import type { Toolchain } from './toolchain.js';

/** The value each stage's result carries. */
export interface StageValues {
  checkout: checkout.CheckoutValue;
  settings: settings.RepoFacts;
  install: install.InstallValue;
  lint: lint.LintValue;
  test: test.TestValue;
  coverage: coverage.CoverageValue;
  artefact: artefact.ArtefactValue;
}

/** The input each stage runs on. */
export interface StageInputs {
  checkout: checkout.CheckoutInput;
  settings: settings.SettingsInput;
  install: install.InstallInput;
  lint: lint.LintInput;
  test: test.TestInput;
  coverage: coverage.CoverageInput;
  artefact: artefact.ArtefactInput;
}

/** One build's results so far, each typed by its stage. */
export type StageResults = { [N in StageName]?: StageResult<StageValues[N]> };

/** What the stages of one build are given, and what they have found so far. */
export interface BuildState {
  input: BuildInput;
  layout: BuildLayout;
  toolchain: Toolchain;
  sandbox: BuildSandbox;
  /** The repository as its caches know it: a local path's own path, else its URL without credentials. */
  repository: string;
  cacheDir: string;
  artefactDir: string;
  artefactMaxBytes: number;
  checkoutCaps: CheckoutCaps;
  gitCacheKey?: string;
  gitCredentials?: GitCredentials;
  /** The runner's defaults for what a repository may set (its settings may lower the limits, never raise them). */
  pytestMark: string;
  flakyReruns: number;
  selectFullEvery: number;
  /** Which tests a repository that does not set `select` runs (SELECT_DEFAULT). */
  selectDefault: 'all' | 'affected';
  /** Whether the repository's kept bytecode is put beside its sources, and this build's kept (BYTECODE_CACHE). */
  bytecodeCache: boolean;
  resources: BuildResources;
  /** Each stage's time limit: the runner's, then the repository's once its settings are read (resolved once). */
  limits: StageLimits;
  results: StageResults;
  /** The build log so far (written into the artefact's reports/build.log). */
  logLines: string[];
  /** With select = "affected": what this build's test run selects (planned just before it). */
  selection?: TestSelection;
  /** Where the build's bytecode is kept, and the checkout's sources, taken before any process of it ran. */
  bytecode?: BytecodePlan;
  /** The repository's kept coverage analysis (a file of the runner's cache), when it has one. */
  coverageCache?: string;
  /** Files the build asked to keep ($CI_RUNNER_KEEP), gathered before the artefact: how many, and where. */
  kept: { dir: string; count: number };
}

/** A cache a stage reports a hit or miss of (the worker's metrics). */
export interface CacheUse {
  cache: 'git' | 'env';
  hit: boolean;
}

/** One stage: its name, the limit it uses, when it runs and on what, and what it adds to the report. */
export interface StageDefinition<N extends StageName> {
  name: N;
  /** Its time limit in StageLimits: configurable (<STAGE>_TIMEOUT_SEC), lowered by a repository. */
  limit: keyof StageLimits;
  /** Its input, or undefined when the stages before it did not give what it needs (it does not run). */
  input(state: BuildState, timeoutMs: number): StageInputs[N] | undefined;
  /** What the pipeline does just before the stage runs, outside the sandbox (its inputs made ready). */
  prepare?(state: BuildState, ctx: StageContext): Promise<void>;
  run(input: StageInputs[N], ctx: StageContext): Promise<StageResult<StageValues[N]>>;
  /** What it adds to the report (the verdict itself is the report's: see assembleReport). */
  report?(result: StageResult<StageValues[N]>, report: BuildReport): void;
  /** The cache it used, for the worker's metrics. */
  cache?(value: StageValues[N]): CacheUse | undefined;
}
