import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CiError } from '../errors.js';
import { pathExists } from '../pathExists.js';
import { runBounded } from '../process.js';
import { type BuildLayout, buildEnv } from './layout.js';
import type { Toolchain } from './toolchain.js';
import type { StageContext, StageResult } from './types.js';

export interface InstallInput {
  layout: BuildLayout;
  toolchain: Toolchain;
  pipCacheDir: string;
  timeoutMs: number;
}

const REQUIREMENT_FILES = ['requirements.txt', 'requirements-dev.txt', 'requirements-test.txt'];

async function isInstallableProject(src: string): Promise<boolean> {
  if ((await pathExists(join(src, 'setup.py'))) || (await pathExists(join(src, 'setup.cfg')))) return true;
  const pyproject = join(src, 'pyproject.toml');
  if (!(await pathExists(pyproject))) return false;
  return /^\s*\[(project|build-system)\]/m.test(await readFile(pyproject, 'utf8'));
}

// The pip arguments that install what the repository declares: its requirement files and the project itself.
async function projectArgs(src: string): Promise<string[]> {
  const args: string[] = [];
  for (const name of REQUIREMENT_FILES) {
    if (await pathExists(join(src, name))) args.push('-r', name);
  }
  if (await isInstallableProject(src)) args.push('-e', '.');
  return args;
}

// Creates the build's own venv (never the runner's), adds pytest and coverage, then the repository's dependencies.
export async function run(
  input: InstallInput,
  ctx: StageContext,
): Promise<StageResult<{ installed: string[] }>> {
  const started = performance.now();
  const { layout, toolchain } = input;
  const env = buildEnv(layout, { PIP_DISABLE_PIP_VERSION_CHECK: '1', PIP_CACHE_DIR: input.pipCacheDir });
  const logFile = join(layout.reports, 'install.log');
  const common = { cwd: layout.src, env, signal: ctx.signal, logFile };
  const pip = [
    '-m',
    'pip',
    '--python',
    join(layout.venv, 'bin', 'python'),
    'install',
    '--progress-bar',
    'off',
  ];
  const elapsed = () => Math.round(performance.now() - started);

  const venv = await runBounded(toolchain.basePython, ['-m', 'venv', '--without-pip', layout.venv], {
    ...common,
    timeoutMs: 60_000,
  });
  if (venv.kind !== 'exited' || venv.exitCode !== 0) {
    throw new CiError('RUNNER_FAULT', 'creating the build environment failed', { retriable: true });
  }
  ctx.log('installing pytest and coverage');
  const tools = await runBounded(toolchain.python, [...pip, '-r', toolchain.testRequirements], {
    ...common,
    timeoutMs: input.timeoutMs,
  });
  if (tools.kind === 'canceled') return { outcome: 'canceled', durationMs: elapsed(), summary: 'canceled' };
  if (tools.kind !== 'exited' || tools.exitCode !== 0) {
    const detail = 'stderr' in tools ? tools.stderr.slice(-1000) : tools.message;
    throw new CiError('RUNNER_FAULT', `installing pytest and coverage failed: ${detail}`, {
      retriable: true,
    });
  }
  const args = await projectArgs(layout.src);
  if (args.length === 0) {
    return {
      outcome: 'passed',
      durationMs: elapsed(),
      summary: 'no dependency files',
      value: { installed: [] },
    };
  }
  ctx.log(`installing the repository's dependencies: pip install ${args.join(' ')}`);
  const project = await runBounded(toolchain.python, [...pip, ...args], {
    ...common,
    timeoutMs: input.timeoutMs,
  });
  const installed = args.filter((arg) => arg !== '-r' && arg !== '-e');
  switch (project.kind) {
    case 'canceled':
      return { outcome: 'canceled', durationMs: elapsed(), summary: 'canceled' };
    case 'timedOut':
      return {
        outcome: 'timedOut',
        durationMs: elapsed(),
        summary: `install exceeded ${input.timeoutMs} ms`,
      };
    case 'notStarted':
      throw new CiError('RUNNER_FAULT', `pip could not start: ${project.message}`, { retriable: true });
    case 'exited':
      if (project.exitCode === 0) {
        return {
          outcome: 'passed',
          durationMs: elapsed(),
          summary: `installed ${installed.join(', ')}`,
          value: { installed },
        };
      }
      return {
        outcome: 'failed',
        durationMs: elapsed(),
        summary: `dependencies could not be installed as declared: ${lastLines(project.stderr, 5)}`,
        value: { installed },
      };
  }
}

function lastLines(text: string, count: number): string {
  return text.trim().split('\n').slice(-count).join('\n');
}
