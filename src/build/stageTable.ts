import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BuildReport } from '../delivery/contracts.js';
import type { BuildResources, CheckoutCaps, GitCredentials, StageLimits } from '../ops/config.js';
import type { BuildSandbox } from '../sandbox/buildSandbox.js';
import * as artefact from '../stages/artefact.js';
import * as checkout from '../stages/checkout.js';
import * as coverage from '../stages/coverage.js';
import * as install from '../stages/install.js';
import * as lint from '../stages/lint.js';
import { planLint } from '../stages/lintPlan.js';
import { copyLintTree } from '../stages/lintTree.js';
import * as settings from '../stages/settings.js';
import * as test from '../stages/test.js';
import { boundFailures } from '../stages/testFailures.js';
import {
  keepTestSelection,
  planTestSelection,
  type SelectionPlace,
  selectionFingerprint,
  type TestSelection,
} from '../stages/testSelection.js';
import type { StageContext, StageName, StageResult } from '../stages/types.js';
import { artefactUrl } from './artefactLocation.js';
import type { BuildInput } from './buildInput.js';
import { collectKeptFiles, DEFAULT_KEPT_LIMITS } from './collectKeptFiles.js';
import type { BuildLayout } from './layout.js';
import { readBuildFile } from './readBuildFile.js';
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
  resources: BuildResources;
  /** Each stage's time limit: the runner's, then the repository's once its settings are read (resolved once). */
  limits: StageLimits;
  results: StageResults;
  /** The build log so far (written into the artefact's reports/build.log). */
  logLines: string[];
  /** With select = "affected": what this build's test run selects (planned just before it). */
  selection?: TestSelection;
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

// Where a build's test selection data lives (its history's data in the runner's cache).
function selectionPlace(state: BuildState): SelectionPlace {
  return {
    layout: state.layout,
    cacheDir: state.cacheDir,
    repository: state.repository,
    commitSha: state.input.commitSha,
    gitdir: passed(state.results.checkout)?.source?.gitdir,
  };
}

// Keeps what the test run recorded for its selection, once the tests reached a verdict and coverage was measured.
async function keepSelection(state: BuildState, ctx: StageContext): Promise<void> {
  const { selection, results } = state;
  const tested = results.test?.outcome === 'passed' || results.test?.outcome === 'failed';
  if (!selection || !tested || results.coverage?.outcome !== 'passed') return;
  const kept = await keepTestSelection(selectionPlace(state), selection);
  ctx.log(
    kept ? 'kept the test selection data for later builds' : 'the test run left no selection data to keep',
  );
}

/** Reports the build's tools write (in its out/ directory), copied into the artefact's reports/. */
const TOOL_REPORTS = ['junit.xml', 'coverage.json', 'pytest-results.json'];

// Copies the tools' reports out of the build's reach into the runner's reports, read as plain files only.
async function collectToolReports(out: string, reports: string): Promise<void> {
  for (const name of TOOL_REPORTS) {
    const bytes = await readBuildFile(out, name);
    if (bytes) await writeFile(join(reports, name), bytes);
  }
}

const passed = <T>(result: StageResult<T> | undefined): T | undefined =>
  result?.outcome === 'passed' ? result.value : undefined;

/** Every stage, by name. */
export const STAGES: { [N in StageName]: StageDefinition<N> } = {
  checkout: {
    name: 'checkout',
    limit: 'checkoutMs',
    input: (state, timeoutMs) => ({
      ...state.input,
      dir: state.layout.src,
      cacheDir: state.cacheDir,
      cacheKey: state.gitCacheKey,
      credentials: state.gitCredentials,
      // The checkout is on the build's own disk: a tree that cannot fit fails its own build, never the runner.
      caps: {
        ...state.checkoutCaps,
        maxBytes: Math.min(
          state.checkoutCaps.maxBytes,
          Math.floor(state.resources.diskMb * 1024 * 1024 * 0.9),
        ),
      },
      timeoutMs,
    }),
    run: checkout.run,
    // A hit: the repository's objects were cached (a new commit's own objects are fetched all the same).
    cache: (value) => ({ cache: 'git', hit: value.known }),
  },
  settings: {
    name: 'settings',
    limit: 'settingsMs',
    input: (state, timeoutMs) =>
      passed(state.results.checkout) && {
        layout: state.layout,
        toolchain: state.toolchain,
        cacheDir: state.cacheDir,
        repository: state.repository,
        timeoutMs,
        defaults: {
          pytestMark: state.pytestMark,
          pytestArgs: [],
          lint: true,
          testWorkers: 1,
          flakyReruns: state.flakyReruns,
          select: 'all',
          limits: state.limits,
          resources: state.resources,
        },
      },
    // Lint reads its own copy, taken before any process of the build ran; then the build user gets its tree.
    async prepare({ layout, sandbox }) {
      await copyLintTree(layout.src, layout.lintTree);
      await sandbox.handOver([layout.src, layout.out, layout.home, layout.tmp]);
    },
    run: settings.run,
  },
  install: {
    name: 'install',
    limit: 'installMs',
    input: (state, timeoutMs) => {
      const facts = passed(state.results.settings);
      return (
        facts && {
          layout: state.layout,
          repository: state.repository,
          toolchain: state.toolchain,
          cacheDir: state.cacheDir,
          timeoutMs,
          extras: facts.extras,
          groups: facts.groups,
          installable: facts.installable,
          buildRequires: facts.buildRequires,
        }
      );
    },
    // The repository's settings take effect: its lower resource limits, and its time limits for every later stage.
    async prepare(state) {
      const repo = passed(state.results.settings)?.settings;
      if (!repo) return;
      state.limits = repo.limits;
      await state.sandbox.lower(repo.resources);
    },
    run: install.run,
    cache: (value) => ({ cache: 'env', hit: value.cacheHit }),
  },
  lint: {
    name: 'lint',
    limit: 'lintMs',
    input: (state, timeoutMs) => {
      const facts = passed(state.results.settings);
      if (!passed(state.results.install) || !facts?.settings.lint) return undefined;
      return {
        layout: state.layout,
        toolchain: state.toolchain,
        timeoutMs,
        repository: state.repository,
        cacheDir: state.cacheDir,
        plan: planLint(facts.lint, facts.settings.formatter, state.toolchain.lintVersions),
      };
    },
    run: lint.run,
    report(result, report) {
      if (result.outcome === 'passed' || result.outcome === 'failed') {
        report.lintErrors = result.value.findings;
        report.lintFindings = result.value.details;
      }
      if (result.outcome === 'timedOut') {
        const text = `TIMEOUT: ${result.summary}`;
        const tool = result.summary.startsWith('black')
          ? 'black'
          : result.summary.startsWith('ruff format')
            ? 'ruff-format'
            : 'ruff';
        report.lintErrors = [text];
        report.lintFindings = [
          { tool, path: '', line: 0, column: 0, code: '', message: text, fixable: false, diff: '' },
        ];
      }
    },
  },
  test: {
    name: 'test',
    limit: 'testMs',
    input: (state, timeoutMs) => {
      const installed = passed(state.results.install);
      const repo = passed(state.results.settings)?.settings;
      return (
        installed &&
        repo && {
          layout: state.layout,
          toolchain: state.toolchain,
          mark: repo.pytestMark,
          extraArgs: repo.pytestArgs,
          workers: repo.testWorkers,
          flakyReruns: repo.flakyReruns,
          timeoutMs,
          sharedEnv: installed.sharedEnv,
          venvDir: installed.venvDir,
          selection: state.selection,
        }
      );
    },
    // With select = "affected": whether this build runs only affected tests, with the earlier build's data ready.
    async prepare(state) {
      const repo = passed(state.results.settings)?.settings;
      if (repo?.select !== 'affected') return;
      const runner = [
        state.toolchain.fingerprint,
        state.toolchain.pluginHash,
        repo.pytestMark,
        ...repo.pytestArgs,
      ];
      const fingerprint = await selectionFingerprint(state.layout.src, runner);
      state.selection = await planTestSelection(selectionPlace(state), fingerprint, state.selectFullEvery);
      await state.sandbox.handOver([state.layout.affected]);
    },
    run: test.run,
    report(result, report) {
      if (result.outcome === 'passed' || result.outcome === 'failed') {
        report.failedTests = result.value.failedTests;
        report.testsRun = result.value.testsRun;
        report.testsSelected = result.value.testsSelected;
        report.testsTotal = result.value.testsTotal;
        // This build's own flip; the worker adds the repository's history (the last 30 days) from Redis.
        report.flakyTests = result.value.flakyTests.map((nodeId) => ({ nodeId, flips: 1 }));
      }
      // The TIMEOUT entry is named by the stage's final summary (the pipeline may have added a limit the kernel
      // enforced meanwhile): its failure is renamed to match.
      const timeoutId = `TIMEOUT: ${result.summary}`;
      if (result.outcome === 'timedOut') {
        report.failedTests = [...(result.value?.failedTests ?? []), timeoutId];
        report.testsRun = result.value?.testsRun ?? 0;
      }
      if (result.outcome === 'passed' || result.outcome === 'failed' || result.outcome === 'timedOut') {
        const failures = (result.value?.failures ?? []).map((failure) =>
          failure.kind === 'timeout' ? { ...failure, nodeId: timeoutId } : failure,
        );
        const bounded = boundFailures(failures);
        report.failures = bounded.failures;
        report.failuresTruncated = bounded.truncated;
      }
    },
  },
  coverage: {
    name: 'coverage',
    limit: 'coverageMs',
    input: (state, timeoutMs) => {
      const outcome = state.results.test?.outcome;
      return outcome === 'passed' || outcome === 'failed' ? { layout: state.layout, timeoutMs } : undefined;
    },
    run: coverage.run,
    report(result, report) {
      if (result.outcome === 'passed') report.lineCoverage = result.value.lineCoverage;
    },
  },
  artefact: {
    name: 'artefact',
    limit: 'artefactMs',
    // Once the commit is checked out, whatever the build reached after that: its reports are kept.
    input: (state, timeoutMs) => {
      const checkedOut = passed(state.results.checkout);
      if (!checkedOut) return undefined;
      const { source } = checkedOut;
      return {
        trees: [
          // The tree at that commit, from the object store: not what the install or the tests wrote into it.
          ...(source ? [{ ...source, prefix: 'source' }] : []),
          { dir: state.layout.reports, prefix: 'reports' },
          ...(state.kept.count > 0 ? [{ dir: state.kept.dir, prefix: 'outputs' }] : []),
        ],
        artefactDir: state.artefactDir,
        commitSha: state.input.commitSha,
        maxBytes: state.artefactMaxBytes,
        timeoutMs,
      };
    },
    // The tools' reports and the files the build kept, copied out of its reach, and the build log so far; and the
    // test selection's data, for later builds of this history, once its tests and coverage ran.
    async prepare(state, ctx) {
      const { layout } = state;
      await keepSelection(state, ctx);
      await collectToolReports(layout.out, layout.reports);
      state.kept.count = await collectKeptFiles(layout.keep, state.kept.dir, {
        ...DEFAULT_KEPT_LIMITS,
        maxTotalBytes: state.artefactMaxBytes,
      });
      if (state.kept.count > 0)
        ctx.log(
          `kept ${state.kept.count} file(s) the build wrote to $CI_RUNNER_KEEP (the artefact's outputs/)`,
        );
      await writeFile(join(layout.reports, 'build.log'), `${state.logLines.join('\n')}\n`);
    },
    run: artefact.run,
    report(result, report) {
      if (result.outcome !== 'passed') return;
      report.artefactUrl = artefactUrl(result.value.path);
      report.artefactSha256 = result.value.sha256;
    },
  },
};

/** The order stages run in; the stages of one step run side by side (lint beside the tests). */
export const STAGE_ORDER: ReadonlyArray<ReadonlyArray<StageName>> = [
  ['checkout'],
  ['settings'],
  ['install'],
  ['lint', 'test'],
  ['coverage'],
  ['artefact'],
];
