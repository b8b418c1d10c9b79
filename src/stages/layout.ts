import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

/** Where each part of one build lives inside its private directory. */
export interface BuildLayout {
  root: string;
  src: string;
  venv: string;
  reports: string;
  home: string;
  tmp: string;
  /** Host variables the operator lets builds inherit (package index, TLS trust, proxies). */
  inherited: Readonly<Record<string, string>>;
}

// Names the directories of a build; the checkout never contains the environment or the reports.
export function buildLayout(buildDir: string, inherited: Readonly<Record<string, string>> = {}): BuildLayout {
  return {
    inherited,
    root: buildDir,
    src: join(buildDir, 'src'),
    venv: join(buildDir, 'venv'),
    reports: join(buildDir, 'reports'),
    home: join(buildDir, 'home'),
    tmp: join(buildDir, 'tmp'),
  };
}

// Creates the directories a build writes to (the source dir is created by checkout).
export async function prepareLayout(layout: BuildLayout): Promise<void> {
  await Promise.all([layout.reports, layout.home, layout.tmp].map((dir) => mkdir(dir, { recursive: true })));
}

// The only environment a build's subprocesses see: the operator's pass-through list and nothing else of the
// runner's (no Redis or Kafka addresses, no credentials).
export function buildEnv(layout: BuildLayout, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...layout.inherited,
    PATH: `${join(layout.venv, 'bin')}:/usr/local/bin:/usr/bin:/bin`,
    HOME: layout.home,
    TMPDIR: layout.tmp,
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    PYTHONDONTWRITEBYTECODE: '1',
    PYTHONUNBUFFERED: '1',
    VIRTUAL_ENV: layout.venv,
    ...extra,
  };
}
