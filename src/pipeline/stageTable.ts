import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as artefact from '../stages/artefact.js';
import * as checkout from '../stages/checkout.js';
import * as coverage from '../stages/coverage.js';
import { keptCoverageCache } from '../stages/coverageCache.js';
import * as install from '../stages/install.js';
import * as lint from '../stages/lint.js';
import { planLint } from '../stages/lintPlan.js';
import { copyLintTree } from '../stages/lintTree.js';
import * as settings from '../stages/settings.js';
import * as test from '../stages/test.js';
import { boundFailures } from '../stages/testFailures.js';
import { planTestSelection, selectionFingerprint } from '../stages/testSelection.js';
import type { StageName, StageResult } from '../stages/types.js';
import { artefactUrl } from './artefactLocation.js';
import { keepBuildBytecode, seedBuildBytecode } from './buildBytecode.js';
import { coverageCachePlace, keepCoverageAnalysis, keepSelection, selectionPlace } from './buildSelection.js';
import { collectKeptFiles, DEFAULT_KEPT_LIMITS } from './collectKeptFiles.js';
import { collectToolReports } from './collectToolReports.js';
import type { StageDefinition } from './stageDefinition.js';

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
          select: state.selectDefault,
          limits: state.limits,
          resources: state.resources,
        },
      },
    // Lint reads its own copy, taken before any process of the build ran, and the kept bytecode joins the sources;
    // then the build user gets its tree.
    async prepare(state, ctx) {
      const { layout, sandbox } = state;
      await copyLintTree(layout.src, layout.lintTree);
      await seedBuildBytecode(state, ctx);
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
          coverageCache: state.coverageCache,
        }
      );
    },
    // coverage's kept analysis; with select = "affected": whether this build runs only affected tests, with the
    // earlier build's data ready.
    async prepare(state) {
      state.coverageCache = await keptCoverageCache(coverageCachePlace(state));
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
      await keepCoverageAnalysis(state, ctx);
      await keepBuildBytecode(state, ctx);
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
