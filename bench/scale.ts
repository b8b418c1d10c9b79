// `npm run scale`: the many-hosts simulation on real projects, without and with cache-aware placement. Not a test:
// it prints numbers (SCALE_COMMITS, SCALE_BURST, SCALE_GAP_SEC, SCALE_PROJECTS, SCALE_COPIES tune the workload).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { downloadSdist } from '../test/support/downloadSdist.js';
import { REAL_MARK } from './realProject.js';
import { describeScale, runScale, type ScaleProject } from './scaleSimulation.js';

// Six real projects from PyPI with their own tests: five of the real-projects suite's (more-itertools, whose whole
// suite runs for minutes under coverage here, gives way to six) and six.
const PROJECTS = [
  'toolz==1.2.0',
  'click==8.5.1',
  'attrs==26.1.0',
  'tomlkit==0.15.2',
  'findpython==0.9.0',
  'six==1.17.0',
];

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'ci-runner-scale-'));
  try {
    const wanted = (process.env.SCALE_PROJECTS ?? '').split(',').filter(Boolean);
    const chosen = PROJECTS.filter(
      (requirement) => wanted.length === 0 || wanted.some((name) => requirement.startsWith(`${name}==`)),
    );
    const projects: ScaleProject[] = [];
    for (const requirement of chosen) {
      const name = requirement.split('==')[0] as string;
      console.error(`scale: ${requirement} from PyPI`);
      const tree = await downloadSdist(requirement, await mkdtemp(join(root, `${name}-`)));
      // SCALE_COPIES=N: each project in N repositories of its own (forks: separate caches), N× the repositories.
      for (let copy = 1; copy <= Number(process.env.SCALE_COPIES ?? 1); copy++) {
        projects.push({ name: copy === 1 ? name : `${name}-${copy}`, tree });
      }
    }
    const options = {
      projects,
      commits: Number(process.env.SCALE_COMMITS ?? 60),
      burst: Number(process.env.SCALE_BURST ?? 6),
      gapMs: Number(process.env.SCALE_GAP_SEC ?? 60) * 1000,
      hosts: 3,
      sharedCache: resolve(process.env.CACHE_DIR ?? '.cache'),
      // The project's whole test suite (REAL_MARK is a mark nothing has); artefacts go to the S3 server.
      env: { PYTEST_MARK: REAL_MARK, ARTEFACT_STORE: 's3', S3_PREFIX: `scale-${Date.now()}/` },
      timeoutMs: 3_600_000,
    };
    console.log(
      `${options.commits} commits over ${projects.length} repositories (${projects.map((p) => p.name).join(', ')}), ` +
        `bursts of ${options.burst} every ${options.gapMs / 1000} s, 3 hosts with 1 build slot each, empty caches`,
    );
    const results = [];
    for (const placement of ['off', 'cache'] as const) {
      console.error(`scale: placement ${placement}`);
      const result = await runScale({ ...options, placement });
      console.log(describeScale(result));
      results.push(result);
    }
    const [off, on] = results as [Awaited<ReturnType<typeof runScale>>, Awaited<ReturnType<typeof runScale>>];
    console.log(
      `ratios cache/off: build p50 ${(on.buildMs.p50 / off.buildMs.p50).toFixed(2)}, ` +
        `latency p50 ${(on.latencyMs.p50 / off.latencyMs.p50).toFixed(2)}, ` +
        `p95 ${(on.latencyMs.p95 / off.latencyMs.p95).toFixed(2)}, ` +
        `builds/min ${(on.buildsPerMinute / off.buildsPerMinute).toFixed(2)}`,
    );
    if (results.some((r) => r.reported !== r.sent || r.duplicated > 0)) process.exitCode = 1;
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(`scale: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
