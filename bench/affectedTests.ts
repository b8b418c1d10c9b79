// The affected-tests rows of `npm run bench`: a real PyPI project, 20 successive one-function commits, each built
// with every test and with `select = "affected"` (pytest-testmon): wall time, tests run, coverage and failures.
import { execFileSync } from 'node:child_process';
import { cp, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BuildReport } from '../src/delivery/contracts.js';
import { downloadSdist } from '../test/support/downloadSdist.js';
import type { FixtureRepo } from '../test/support/fixtureRepo.js';
import { readArtefact } from '../test/support/readArtefact.js';
import { CLICK_PRE_COMMIT } from '../test/support/realProjects.js';
import { median, time } from './measure.js';

interface AffectedProject {
  requirement: string;
  /** The modules whose functions the commits edit, one function each, in order. */
  modules: string[];
  /** Files of the repository its sdist leaves out that its own CI reads (click's pre-commit configuration). */
  repositoryFiles?: Record<string, string>;
}

const PROJECTS: AffectedProject[] = [
  // flit, src layout, branch coverage on (as published), ~2,400 tests in ~7 s (plus 31,000 stress tests its
  // addopts deselect, collected in a full run).
  {
    requirement: 'click==8.5.1',
    modules: ['src/click/termui.py', 'src/click/decorators.py'],
    repositoryFiles: { '.pre-commit-config.yaml': CLICK_PRE_COMMIT },
  },
  // flit, flat layout, ~520 tests in ~2.5 s, a test file per module: commits to four of its modules.
  {
    requirement: 'boltons==26.2.0',
    modules: [
      'boltons/fileutils.py',
      'boltons/mathutils.py',
      'boltons/timeutils.py',
      'boltons/formatutils.py',
    ],
  },
];
const COMMITS = 20;
/** Every this-many-th commit injects a bug (raised at the top of the function): both runs must find its failures. */
const BUG_EVERY = 5;

export interface AffectedBenchContext {
  root: string;
  newRepo: (name: string) => Promise<FixtureRepo>;
  /** A build with the runner's pipeline and a mark every test carries, sharing the bench's caches. */
  build: (url: string, sha: string) => Promise<BuildReport>;
}

// The module's public functions, in file order, each once (overloads share a name).
const FUNCTIONS = `
import ast, sys
tree = ast.parse(open(sys.argv[1]).read())
names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
print("\\n".join(dict.fromkeys(names)))
`;

// Inserts a line before the first statement of a function's body that is not its docstring (in its last definition).
const EDIT = `
import ast, sys
path, name, text = sys.argv[1:4]
source = open(path).read()
# The last definition of the name: the implementation after any typing overloads.
for node in reversed(ast.parse(source).body):
    if isinstance(node, ast.FunctionDef) and node.name == name:
        body = node.body
        doc = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and len(body) > 1
        first = body[1] if doc else body[0]
        lines = source.split("\\n")
        lines.insert(first.lineno - 1, " " * first.col_offset + text)
        open(path, "w").write("\\n".join(lines))
        break
else:
    sys.exit(f"no function {name}")
`;

interface Row {
  commit: number;
  fn: string;
  bug: boolean;
  full: BuildReport;
  fullMs: number;
  affected: BuildReport;
  affectedMs: number;
  /** Branch coverage (covered / all branches, in %) from each build's coverage.json; NaN without branches. */
  branchesFull: number;
  branchesAffected: number;
}

// Branch coverage in % from the coverage.json a build kept in its artefact (NaN when it measures no branches).
async function branchCoverage(report: BuildReport): Promise<number> {
  const entries = await readArtefact(fileURLToPath(report.artefactUrl));
  const totals = JSON.parse(entries.get('reports/coverage.json')?.content ?? '{}').totals ?? {};
  return totals.num_branches > 0 ? (totals.covered_branches / totals.num_branches) * 100 : Number.NaN;
}

export async function benchAffectedTests(ctx: AffectedBenchContext): Promise<void> {
  const only = process.env.BENCH_AFFECTED_PROJECT;
  for (const project of PROJECTS) {
    if (!only || project.requirement.startsWith(only)) await benchProject(ctx, project);
  }
}

async function benchProject(ctx: AffectedBenchContext, project: AffectedProject): Promise<void> {
  const { requirement } = project;
  console.error(`bench: affected tests on ${requirement}`);
  const tree = await downloadSdist(requirement, await mkdtemp(join(ctx.root, 'affected-')));
  for (const [name, text] of Object.entries(project.repositoryFiles ?? {}))
    await writeFile(join(tree, name), text);
  const affectedTree = `${tree}-affected`;
  await cp(tree, affectedTree, { recursive: true });
  const pyproject = join(affectedTree, 'pyproject.toml');
  await writeFile(pyproject, `${await readFile(pyproject, 'utf8')}\n[tool.ci-runner]\nselect = "affected"\n`);
  const name = requirement.split('==')[0];
  const fullRepo = await ctx.newRepo(`affected-${name}-full`);
  const affectedRepo = await ctx.newRepo(`affected-${name}-affected`);
  const functions = project.modules
    .flatMap((module) =>
      execFileSync('python3', ['-c', FUNCTIONS, join(tree, module)], { encoding: 'utf8' })
        .trim()
        .split('\n')
        .map((fn) => ({ module, fn })),
    )
    .slice(0, COMMITS);
  // The published trees, built once each (not measured): warm environments, and the affected side's first data.
  const firstFull = fullRepo.commitDir(tree, 'as published');
  fullRepo.push('main');
  const firstAffected = affectedRepo.commitDir(affectedTree, 'as published');
  affectedRepo.push('main');
  await ctx.build(fullRepo.url, firstFull);
  await ctx.build(affectedRepo.url, firstAffected);

  const rows: Row[] = [];
  for (const [k, { module, fn }] of functions.entries()) {
    const bug = (k + 1) % BUG_EVERY === 0;
    const text = bug ? 'raise RuntimeError("injected by the bench")' : `_bench_edit = ${k}`;
    const shas: string[] = [];
    for (const [dir, repo] of [
      [tree, fullRepo],
      [affectedTree, affectedRepo],
    ] as const) {
      execFileSync('python3', ['-c', EDIT, join(dir, module), fn, text]);
      shas.push(repo.commitDir(dir, `${fn}: ${bug ? 'a bug' : 'a one-line change'}`));
      repo.push('main');
    }
    console.error(`bench: affected tests, commit ${k + 1}/${functions.length} (${fn})`);
    let full: BuildReport | undefined;
    let affected: BuildReport | undefined;
    const fullMs = await time(async () => {
      full = await ctx.build(fullRepo.url, shas[0] as string);
    });
    const affectedMs = await time(async () => {
      affected = await ctx.build(affectedRepo.url, shas[1] as string);
    });
    rows.push({
      commit: k + 1,
      fn,
      bug,
      full: full as BuildReport,
      fullMs,
      affected: affected as BuildReport,
      affectedMs,
      branchesFull: await branchCoverage(full as BuildReport),
      branchesAffected: await branchCoverage(affected as BuildReport),
    });
  }
  printRows(project, rows);
}

function printRows(project: AffectedProject, rows: Row[]): void {
  const pad = (value: string | number, width: number) => String(value).padStart(width);
  const points = (value: number) => (Number.isNaN(value) ? '-' : value.toFixed(3));
  console.log(
    `\naffected tests: ${project.requirement}, ${rows.length} successive one-function commits to ${project.modules.join(', ')} (every ${BUG_EVERY}th a bug that stays), each built full and affected`,
  );
  console.log(
    `${'commit'.padEnd(30)} ${pad('wall full', 10)} ${pad('affected', 9)} ${pad('ratio', 6)} ${pad('tests full', 10)} ${pad('affected', 9)} ${pad('failures', 9)} ${pad('Δ lines', 8)} ${pad('Δ branches', 10)}`,
  );
  let missed = 0;
  let worstLines = 0;
  let worstBranches = 0;
  for (const row of rows) {
    const sameFailures =
      JSON.stringify([...row.full.failedTests].sort()) ===
      JSON.stringify([...row.affected.failedTests].sort());
    if (!sameFailures) missed += 1;
    const lines = Math.abs(row.full.lineCoverage - row.affected.lineCoverage);
    const branches = Math.abs(row.branchesFull - row.branchesAffected);
    worstLines = Math.max(worstLines, lines);
    if (!Number.isNaN(branches)) worstBranches = Math.max(worstBranches, branches);
    console.log(
      `${`${row.commit} ${row.fn}${row.bug ? ' (bug)' : ''}`.padEnd(30)} ${pad(`${row.fullMs.toFixed(0)} ms`, 10)} ${pad(`${row.affectedMs.toFixed(0)} ms`, 9)} ${pad((row.affectedMs / row.fullMs).toFixed(2), 6)} ${pad(row.full.testsRun, 10)} ${pad(row.affected.testsRun, 9)} ${pad(sameFailures ? `equal ${row.full.failedTests.length}` : 'DIFFER', 9)} ${pad(points(lines), 8)} ${pad(points(branches), 10)}`,
    );
  }
  // Where the time goes: each stage's median, full and affected.
  const stages = [...new Set(rows.flatMap((row) => row.full.stages.map((stage) => stage.name)))];
  const stageMedian = (report: 'full' | 'affected', name: string) =>
    median(rows.map((row) => row[report].stages.find((stage) => stage.name === name)?.durationMs ?? 0));
  for (const report of ['full', 'affected'] as const) {
    console.log(
      `stage medians, ${report.padEnd(8)}: ${stages.map((name) => `${name} ${stageMedian(report, name).toFixed(0)} ms`).join(', ')}`,
    );
  }
  const fullMs = rows.map((row) => row.fullMs);
  const affectedMs = rows.map((row) => row.affectedMs);
  const ratios = rows.map((row) => row.affectedMs / row.fullMs);
  const testsFull = rows.reduce((sum, row) => sum + row.full.testsRun, 0);
  const testsAffected = rows.reduce((sum, row) => sum + row.affected.testsRun, 0);
  console.log(
    `${project.requirement.split('==')[0]}: affected vs full: wall ${median(affectedMs).toFixed(0)} ms vs ${median(fullMs).toFixed(0)} ms, ratio of medians ${(median(affectedMs) / median(fullMs)).toFixed(2)}, median ratio ${median(ratios).toFixed(2)} (per commit ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}); tests run ${testsAffected} vs ${testsFull}; commits whose failures differ: ${missed}; largest coverage difference ${worstLines.toFixed(3)} points (lines), ${worstBranches.toFixed(3)} (branches)`,
  );
}
