// `npm run bench` (or BENCH_ONLY=egress): a project with real dependencies (click, attrs) installed cold and warm
// through the egress proxy (BUILD_EGRESS=index) against the same install with the internet (the runner before the
// proxy), alternating in the same run.
import { join } from 'node:path';
import type { BuildReport } from '../src/delivery/contracts.js';
import type { SandboxHost } from '../src/sandbox/sandboxHost.js';
import type { FixtureRepo } from '../test/support/fixtureRepo.js';
import { cleanProject } from '../test/support/pythonProject.js';
import { line } from './measure.js';

export interface EgressBench {
  root: string;
  rounds: number;
  newRepo(name: string): Promise<FixtureRepo>;
  build(url: string, sha: string, cacheDir: string, sandbox: SandboxHost): Promise<BuildReport>;
  /** The same host with BUILD_EGRESS=index and with BUILD_EGRESS=internet. */
  hosts: { index: SandboxHost; internet: SandboxHost };
}

function project(variant: string): Record<string, string> {
  return {
    ...cleanProject(),
    'pyproject.toml': [
      '[build-system]',
      'requires = ["setuptools>=61"]',
      'build-backend = "setuptools.build_meta"',
      '',
      '[project]',
      'name = "calc"',
      'version = "0.1.0"',
      `description = "egress bench ${variant}"`,
      'dependencies = ["click==8.1.8", "attrs==25.3.0"]',
      '',
      '[tool.pytest.ini_options]',
      'markers = ["fast: quick tests"]',
      '',
    ].join('\n'),
  };
}

export async function benchEgressInstall(bench: EgressBench): Promise<void> {
  const repo = await bench.newRepo('bench-egress');
  const installMs = (report: BuildReport) => {
    if (report.status !== 'PASSED') throw new Error(`egress bench build ${report.status}: ${report.error}`);
    return report.stages.find((stage) => stage.name === 'install')?.durationMs ?? Number.NaN;
  };
  const rows = {
    index: { cold: [] as number[], warm: [] as number[] },
    internet: { cold: [] as number[], warm: [] as number[] },
  };
  for (let round = 0; round < bench.rounds; round += 1) {
    for (const mode of (round % 2 ? ['internet', 'index'] : ['index', 'internet']) as Array<
      'index' | 'internet'
    >) {
      console.error(`bench: egress ${mode} round ${round + 1}/${bench.rounds}`);
      // An empty cache: every package is downloaded, through the proxy or not.
      const cacheDir = join(bench.root, `egress-${mode}-${round}`);
      const sha = await repo.commit(project(`${mode} ${round}`), `${mode} ${round}`);
      repo.push('main');
      rows[mode].cold.push(installMs(await bench.build(repo.url, sha, cacheDir, bench.hosts[mode])));
      const again = await repo.commit({ 'README.md': `round ${round}\n` }, `warm ${mode} ${round}`);
      repo.push('main');
      rows[mode].warm.push(installMs(await bench.build(repo.url, again, cacheDir, bench.hosts[mode])));
    }
  }
  line(
    'install, cold, through the egress proxy',
    rows.index.cold,
    'the same with the internet (before)',
    rows.internet.cold,
    '<= 1.10',
  );
  line(
    'install, warm, through the egress proxy',
    rows.index.warm,
    'the same with the internet (before)',
    rows.internet.warm,
  );
}
