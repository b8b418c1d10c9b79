import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readBuildFile } from '../pipeline/readBuildFile.js';
import { dependencyLines } from './sharedEnvironment.js';
import type { StageContext } from './types.js';
import { type Outcome, type SandboxedUv, type UvInput, verdict } from './uvRun.js';

/** What resolving a new environment key needs: the project's test extras, groups and build backend. */
export interface PinsInput extends UvInput {
  extras: string[];
  groups: string[];
  installable: boolean;
  buildRequires: string[];
}

/** A build requirement as PEP 508 writes it; anything else (an option, a newline) is not passed on. */
const REQUIREMENT = /^[A-Za-z0-9][A-Za-z0-9._\-[\], <>=!~;:'"()*+@/]*$/;

// What uv resolves for a new environment key: the runner's test tools, the requirement files, the project with
// its test extras, and its build backend (so the project installs offline, without build isolation).
async function writeInputs(
  input: PinsInput,
  requirements: string[],
  ctx: StageContext,
  runnerTestPins: boolean,
): Promise<string> {
  const { layout } = input;
  const lines = runnerTestPins
    ? [`-r ${ctx.sandbox.runnerFile(input.toolchain.testRequirements)}`]
    : [...PROJECT_TEST_TOOLS];
  lines.push(...requirements.map((file) => `-r ${join(layout.inside.src, file)}`));
  if (input.installable) {
    const extras = input.extras.length ? `[${input.extras.join(',')}]` : '';
    lines.push(`-e ${layout.inside.src}${extras}`);
    lines.push(...input.buildRequires.filter((r) => REQUIREMENT.test(r) && !r.startsWith('-')));
    // hatchling asks for `editables` when building an editable wheel (PEP 660's get_requires_for_build_editable),
    // which --no-build-isolation does not install by itself.
    if (input.buildRequires.some((r) => /^hatchling\b/i.test(r))) lines.push('editables');
  }
  const file = join(layout.sandbox, 'inputs.in');
  await writeFile(file, `${lines.join('\n')}\n`, { mode: 0o644 });
  return file;
}

// The oldest test tools the runner's plugin and reports work with, for a project that pins its own.
const PROJECT_TEST_TOOLS = ['pytest>=7', 'coverage>=7', 'pytest-xdist'];
// uv's answer when the project's own requirements conflict with the runner's pinned test tools.
const TEST_TOOL_CONFLICT = /you require (pytest|coverage|pytest-xdist)==/;

// Resolves the declarations to exact pins in the sandbox (the project's build backend runs there, with the internet
// but not the host): with the runner's test pins, or the project's own when they conflict with them. Returns the
// pins, or the failed outcome.
export async function resolvePins<V>(
  input: PinsInput,
  ctx: StageContext,
  requirements: string[],
  inSandbox: SandboxedUv,
  value: V,
): Promise<string | Outcome<V>> {
  const { layout, toolchain } = input;
  const python = join(layout.inside.venv, 'bin', 'python');
  const output = join(layout.inside.out, 'pins.txt');
  ctx.log(
    `resolving ${[...requirements, input.installable ? 'the project' : ''].filter(Boolean).join(', ') || 'the runner tools'}`,
  );
  const resolve = async (runnerTestPins: boolean) => {
    const inputs = await writeInputs(input, requirements, ctx, runnerTestPins);
    return inSandbox(
      [
        'pip',
        'compile',
        '--python',
        python,
        '--no-header',
        '--no-annotate',
        '--quiet',
        '-o',
        output,
        ...input.groups.flatMap((group) => [
          '--group',
          `${join(layout.inside.src, 'pyproject.toml')}:${group}`,
        ]),
        ctx.sandbox.runnerFile(inputs),
      ],
      { venv: true, write: ['src'], network: true, files: [inputs, toolchain.testRequirements] },
    );
  };
  let compile = await resolve(true);
  if (compile.kind === 'exited' && compile.exitCode !== 0 && TEST_TOOL_CONFLICT.test(compile.stderr)) {
    // The project pins its own pytest or coverage (say pytest~=7.2): its tests are meant to run on that.
    const retry = await resolve(false);
    if (retry.kind === 'exited' && retry.exitCode === 0) {
      ctx.log(`the project pins its own test tools, which conflict with the runner's; using the project's`);
    }
    if (retry.kind !== 'exited' || retry.exitCode === 0) compile = retry;
  }
  const failed = verdict(compile, 'dependencies could not be installed as declared', input.timeoutMs, value);
  if (failed) return failed;
  const resolved = await readBuildFile(layout.out, 'pins.txt', 4 * 1024 * 1024);
  return dependencyLines(resolved?.toString('utf8') ?? '', layout.inside.src);
}
