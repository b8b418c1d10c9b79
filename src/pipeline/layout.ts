import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { SYSTEM_PATH } from '../host/systemPath.js';
import { installOnly } from '../ops/buildEnvConfig.js';

/** The build's directories as its own processes see them (fixed paths inside the sandbox). */
export interface BuildPaths {
  src: string;
  venv: string;
  /** Where the build's tools write their reports (JUnit XML, coverage data, ruff JSON). */
  out: string;
  /** Files the build wants kept: stored in the artefact under outputs/ (the build finds it in $CI_RUNNER_KEEP). */
  keep: string;
  home: string;
  tmp: string;
  /** Lint's own directory (its caches, home and report): no process of the build's own ever sees it. */
  lint: string;
  /**
   * The test selection's data (select = "affected"): its own mount, made fresh by the runner just before the test
   * stage, so nothing the install did can stand in its place.
   */
  affected: string;
}

/** Where each part of one build lives inside its private directory on the host. */
export interface BuildLayout extends BuildPaths {
  root: string;
  /** Where everything the build's processes write lives (its own filesystem's mount point, when it has one). */
  disk: string;
  /** The runner's own records of the build (stage output, build log); never visible to the build. */
  reports: string;
  /** Files the runner writes for the sandbox (passwd, resolv.conf); never writable by the build. */
  sandbox: string;
  /**
   * The checkout's lint inputs, copied before the build ran anything: what lint reads (at the source path), so
   * that what the build's tests write while lint runs can never reach lint or its caches.
   */
  lintTree: string;
  /** The same directories as the build's processes see them. */
  inside: BuildPaths;
  /** Host variables the operator lets builds inherit (package index, TLS trust, proxies). */
  inherited: Readonly<Record<string, string>>;
}

/**
 * Where a sandboxed build finds its directories, whatever the host path of its build directory. No component is
 * a name tools skip by default (black and ruff exclude `build/`, `dist/`, `venv/`).
 */
export const SANDBOX_PATHS: Readonly<BuildPaths> = Object.freeze({
  src: '/workspace',
  venv: '/ci/env',
  out: '/ci/out',
  keep: '/ci/out/keep',
  home: '/ci/home',
  tmp: '/ci/tmp',
  lint: '/ci/lint',
  affected: '/ci/affected',
});

// Names the directories of a build; the checkout never contains the environment or the reports. Sandboxed builds
// see their directories at fixed paths, unsandboxed ones at their host paths.
export function buildLayout(
  buildDir: string,
  inherited: Readonly<Record<string, string>> = {},
  sandboxed = true,
): BuildLayout {
  // What the build's own processes write is under disk/ (the build's own filesystem, where the worker gives it one);
  // what the runner writes (reports, lint, the sandbox's files) is beside it, never short of room because of the build.
  const disk = join(buildDir, 'disk');
  const host: BuildPaths = {
    src: join(disk, 'src'),
    venv: join(disk, 'venv'),
    out: join(disk, 'out'),
    keep: join(disk, 'out', 'keep'),
    home: join(disk, 'home'),
    tmp: join(disk, 'tmp'),
    lint: join(buildDir, 'lint'),
    affected: join(disk, 'affected'),
  };
  return {
    ...host,
    inherited,
    root: buildDir,
    disk,
    reports: join(buildDir, 'reports'),
    sandbox: join(buildDir, 'sandbox'),
    lintTree: join(buildDir, 'lint-tree'),
    inside: sandboxed ? SANDBOX_PATHS : host,
  };
}

// Creates the directories a build writes to (the source dir is created by checkout, the venv by install).
export async function prepareLayout(layout: BuildLayout): Promise<void> {
  await Promise.all(
    [layout.reports, layout.sandbox, layout.keep, layout.home, layout.tmp].map((dir) =>
      mkdir(dir, { recursive: true }),
    ),
  );
}

// The only environment a build's subprocesses see: the operator's pass-through list and nothing else of the
// runner's (no Redis or Kafka addresses, no credentials). The package index's and proxies' variables (which may
// carry credentials) reach the install only: lint and tests have no network to use them on. `CI_RUNNER_BUILD` lets
// the runner find the build's processes if the worker that started them dies.
export function buildEnv(
  layout: BuildLayout,
  extra: Record<string, string> = {},
  { install = false } = {},
): Record<string, string> {
  const { inside } = layout;
  const inherited = Object.entries(layout.inherited).filter(([name]) => install || !installOnly(name));
  return {
    ...Object.fromEntries(inherited),
    PATH: `${join(inside.venv, 'bin')}:${SYSTEM_PATH}`,
    HOME: inside.home,
    TMPDIR: inside.tmp,
    USER: 'build',
    LOGNAME: 'build',
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    PYTHONUNBUFFERED: '1',
    VIRTUAL_ENV: inside.venv,
    CI_RUNNER_BUILD: layout.root,
    CI_RUNNER_KEEP: inside.keep,
    ...extra,
  };
}
