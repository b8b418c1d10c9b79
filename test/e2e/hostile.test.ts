import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Queue } from 'bullmq';
import { type BuildReport, encodeBuildReport } from '../../src/delivery/contracts.js';
import { buildJobId, connectRedis } from '../../src/delivery/queue.js';
import type { RunningWorker } from '../../src/worker/worker.js';
import { type Canary, makeCanary } from '../support/canary.js';
import {
  daemonSeconds,
  genuineSixTest,
  type HostFacts,
  type HostileCase,
  hostileCases,
} from '../support/hostileRepos.js';
import { cleanProject } from '../support/pythonProject.js';
import { type ArtefactEntry, readArtefact } from '../support/readArtefact.js';
import { createRunnerHarness, type RunnerHarness } from '../support/runnerHarness.js';
import { startTestHosts, type TestHosts } from '../support/testHosts.js';
import { startTestResolver, type TestResolver } from '../support/testResolver.js';

const run = promisify(execFile);

// `npm run hostile` runs this with the runner's default limits (HOSTILE_SCALE=full); inside `npm test` the same
// attacks run against lower limits so they end sooner.
const FULL = process.env.HOSTILE_SCALE === 'full';
const LIMITS: Record<string, string> = FULL
  ? { BUILD_DISK_MB: '1024' }
  : { BUILD_MEMORY_MB: '768', BUILD_FILE_SIZE_MB: '64' };
/** The disk the fill-the-disk case may use: the runner's limit in `npm run hostile`, its own lower one otherwise. */
const DISK_MB = FULL ? 1024 : 256;
const MIB = 1024 * 1024;
/** What the host's free space may fall by beyond the build's limit: its image's metadata, the runner's own files. */
const DISK_SLACK_MB = 100;
/** Names the test's resolver answers: a host that is not the index, and allowed names that lead to local addresses. */
const INTERNET_HOST = 'internet-host.test';
const REBINDING = { 'rebind-loopback.test': '127.0.0.1', 'rebind-metadata.test': '169.254.169.254' };

/** Every line of attacks.txt in the artefact: what the attack tried, and what became of it. */
function attacks(entries: Map<string, ArtefactEntry>): Map<string, string> {
  const text = entries.get('outputs/attacks.txt')?.content ?? '';
  return new Map(
    text
      .split('\n')
      .filter(Boolean)
      .map((line) => line.split('\t') as [string, string]),
  );
}

describe('a hostile repository fails its own build and nothing else', () => {
  let harness: RunnerHarness;
  let worker: RunningWorker;
  let facts: HostFacts;
  let queue: Queue;
  const canary = `canary-${randomBytes(12).toString('hex')}`;
  const redis = connectRedis(process.env.REDIS_URL ?? 'redis://127.0.0.1:16379');
  const redisKey = `hostile-canary-${canary}`;
  const built = new Map<string, { report: BuildReport; entries: Map<string, ArtefactEntry> }>();
  let sharedSixBefore = new Map<string, string>();
  // What a build's planted links point at: a directory and file the test owns, never a real system path.
  let linkCanary: Canary;
  let linkCanaryBefore = '';
  let hosts: TestHosts;
  let resolver: TestResolver;
  let redisConnectionsBefore = 0;
  let lowestFree = Number.POSITIVE_INFINITY;
  let freeBefore = 0;

  // six.py of every shared environment the runner built, by directory: what later builds install from.
  const sharedSix = async (): Promise<Map<string, string>> => {
    const envs = join(facts.cacheDir, 'envs');
    const found = new Map<string, string>();
    for (const dir of await readdir(envs)) {
      const file = join(envs, dir, 'lib', 'python3.11', 'site-packages', 'six.py');
      if (existsSync(file)) found.set(dir, await readFile(file, 'utf8'));
    }
    return found;
  };

  // Everything the runner made public about one build: the report, the artefact's bytes, the job log, the metrics.
  const published = async (report: BuildReport): Promise<string> => {
    const artefact = report.artefactUrl ? await readArtefact(fileURLToPath(report.artefactUrl)) : new Map();
    const logs = await queue.getJobLogs(buildJobId(report.commitSha), 0, -1);
    const metrics = await (await fetch(`${worker.metricsUrl}/metrics`)).text();
    return [
      encodeBuildReport(report).toString('latin1'),
      ...[...artefact.values()].map((entry) => `${entry.content ?? ''}${entry.linkname ?? ''}`),
      ...logs.logs,
      metrics,
    ].join('\n');
  };

  // The lowest free space of the work directory's filesystem, sampled every 100 ms until stopped.
  const sampleFreeSpace = () => {
    const free = async () => {
      const stats = await statfs(facts.workDir);
      return stats.bavail * stats.bsize;
    };
    void free().then((bytes) => {
      freeBefore = bytes;
    });
    const timer = setInterval(() => {
      void free().then((bytes) => {
        lowestFree = Math.min(lowestFree, bytes);
      });
    }, 100);
    return { stop: () => clearInterval(timer) };
  };

  const buildOne = async (name: string, files: HostileCase['files'], links?: HostileCase['links']) => {
    const repo = await harness.newRepo(name);
    const sha = await repo.commit(files, name, [], links);
    repo.push('main');
    await harness.announce({ sha, repositoryUrl: repo.url });
    const report = await harness.reports.waitFor(sha, 300_000);
    const entries = report.artefactUrl ? await readArtefact(fileURLToPath(report.artefactUrl)) : new Map();
    return { report, entries, repo };
  };

  before(async () => {
    hosts = await startTestHosts();
    resolver = await startTestResolver({ [INTERNET_HOST]: hosts.web, ...REBINDING });
    harness = await createRunnerHarness('hostile', {
      ...LIMITS,
      // The proxy asks the test's resolver, which also knows the index's names; the rebinding names are allowed.
      BUILD_EGRESS_DNS: resolver.address,
      BUILD_EGRESS_ALLOW: Object.keys(REBINDING).join(','),
      // Secrets a build must never see: a git password in the runner's configuration and its environment.
      GIT_HTTP_USERNAME: 'ci',
      GIT_HTTP_PASSWORD: canary,
    });
    process.env.CI_RUNNER_HOSTILE_CANARY = canary;
    const { config } = harness.space;
    const rootCanary = `/root/.ci-runner-canary-${canary.slice(-8)}`;
    const cacheCanary = join(config.cacheDir, `canary-${canary.slice(-8)}.txt`);
    linkCanary = await makeCanary();
    linkCanaryBefore = await linkCanary.state();
    await writeFile(rootCanary, canary, { mode: 0o600 });
    await writeFile(cacheCanary, canary);
    await redis.set(redisKey, canary);
    facts = {
      cacheDir: config.cacheDir,
      workDir: config.workDir,
      artefactDir: config.artefactDir,
      runnerSource: process.cwd(),
      runnerPid: process.pid,
      redisPort: Number(new URL(config.redis.url).port),
      kafkaPort: Number(config.kafka.brokers[0]?.split(':')[1]),
      marker: `hostile-${canary.slice(-10)}`,
      canaryFiles: [rootCanary, cacheCanary],
      canaryDir: linkCanary.dir,
      canaryDirFile: linkCanary.file,
      egress: {
        service: hosts.service,
        web: hosts.web,
        redisPort: hosts.redisPort,
        internetHost: INTERNET_HOST,
        rebinding: Object.keys(REBINDING),
      },
      diskMb: DISK_MB,
    };
    redisConnectionsBefore = await hosts.redisConnections();
    queue = new Queue(config.queueName, { connection: redis });
    await harness.startBridge();
    worker = await harness.startWorker();
    // A clean build first, so a shared environment with six exists for the attacks to aim at.
    const clean = await buildOne('before-attacks', {
      ...cleanProject(),
      'requirements.txt': 'six==1.17.0\n',
      ...genuineSixTest(),
    });
    assert.equal(clean.report.status, 'PASSED', clean.report.error);
    sharedSixBefore = await sharedSix();
    assert.ok(sharedSixBefore.size >= 1, 'a shared environment holds six');
  });

  after(async () => {
    delete process.env.CI_RUNNER_HOSTILE_CANARY;
    await redis.del(redisKey);
    for (const file of facts?.canaryFiles ?? []) await rm(file, { force: true });
    await linkCanary?.remove();
    await queue?.close();
    await harness?.close();
    await hosts?.close();
    await resolver?.close();
    redis.disconnect();
  });

  const scale = { bigFileGiB: 10, memoryGiB: 4 };
  test('every attack: the expected status with its reason, nothing leaked, the runner unharmed', async (t) => {
    for (const attack of hostileCases(facts, scale)) {
      await t.test(`${attack.name}: ${attack.status}`, async (each) => {
        const sampler = attack.name === 'fill-the-disk' ? sampleFreeSpace() : undefined;
        const { report, entries } = await buildOne(attack.name, attack.files, attack.links).finally(() =>
          sampler?.stop(),
        );
        built.set(attack.name, { report, entries });

        const said = `${report.error} ${report.failedTests.join(' ')}`;
        each.diagnostic(
          `REPORT ${attack.name}: ${report.status} | ${said.trim() || '-'} | ${report.durationMs} ms`,
        );
        assert.equal(report.status, attack.status, said);
        if (attack.reason) assert.match(said, attack.reason);
        assert.match(report.sandbox, /^bubblewrap as uid \d+ \(unprivileged/);
        const everything = await published(report);
        assert.ok(!everything.includes(canary), 'no secret in the report, artefact, job log or metrics');
        assert.ok(!everything.includes(linkCanary.secret), 'no byte of a linked host file published');
        assert.equal(
          await linkCanary.state(),
          linkCanaryBefore,
          'the linked canary kept content, mode, owner',
        );
        assert.match(report.sandbox, /seccomp: \d+ syscalls denied, no new user namespaces/);
        for (const [what, outcome] of attacks(entries)) {
          if (what.startsWith('/tmp/')) continue; // its private /tmp: checked on the host below
          assert.doesNotMatch(outcome, /^(WROTE|READ|CONNECTED|SENT)/, `${what}: ${outcome}`);
        }
        assert.equal(existsSync(`/tmp/${facts.marker}`), false, 'nothing written to the host /tmp');
        assert.equal(await redis.get(redisKey), canary, 'Redis untouched');
        const ready = await fetch(`${worker.metricsUrl}/readyz`);
        assert.equal(ready.status, 200, 'the worker is still ready');
      });
    }
  });

  test('what the attacks tried, case by case, was refused', async (t) => {
    const read = attacks(built.get('read-secrets')?.entries ?? new Map());
    assert.match(read.get('/proc pids') ?? '', /^[0-9 ]+$/);
    assert.ok((read.get('/proc pids') ?? '').split(' ').length < 10, 'only its own processes are visible');
    // At most the skeleton of directories a mount point needs; never their content.
    for (const dir of [facts.cacheDir, facts.runnerSource, facts.workDir, facts.artefactDir]) {
      assert.doesNotMatch(read.get(dir) ?? '', /canary|package\.json|src|uv|envs|git|tools/, dir);
    }
    for (const file of facts.canaryFiles) assert.match(read.get(file) ?? '', /^blocked/, file);
    assert.doesNotMatch(read.get('/root') ?? '', /\.ssh|canary/);
    assert.match(read.get('/root/.ssh/id_rsa') ?? '', /^blocked/);

    const wrote = attacks(built.get('write-outside')?.entries ?? new Map());
    assert.equal(wrote.get('remount'), 'blocked');
    assert.ok([...wrote.keys()].some((what) => what.endsWith('six.py')));

    const poison = attacks(built.get('poison-from-install-and-tests')?.entries ?? new Map());
    for (const where of ['setup.py', 'test']) {
      assert.ok(
        [...poison.keys()].some((what) => what.startsWith(`${where} 10.0.2.2:`)),
        `${where} tried the host`,
      );
    }

    // setup.py runs twice: while resolving (through the proxy) and at the editable install (no network at all).
    const tried = (built.get('egress-from-setup-py')?.entries.get('outputs/attacks.txt')?.content ?? '')
      .split('\n')
      .filter(Boolean)
      .map((line: string) => line.split('\t') as [string, string]);
    const egress = new Map(tried.filter(([, outcome]) => /403/.test(outcome)));
    for (const [what, outcome] of tried) assert.match(outcome, /^blocked/, what);
    const { service, web } = facts.egress;
    for (const what of [
      `direct ${service}:6379`,
      `direct ${web}:80`,
      `proxy ${service}:6379`,
      `proxy ${web}:80`,
      `proxy ${INTERNET_HOST}:443`,
      ...Object.keys(REBINDING).map((name) => `proxy ${name}:443`),
      `proxy exfil-${facts.marker}.${INTERNET_HOST}:443`,
      `http http://${web}/${facts.marker}`,
      `http http://${INTERNET_HOST}/${facts.marker}`,
      `dns dns-${facts.marker}.${INTERNET_HOST}`,
    ]) {
      assert.ok(
        tried.some(([attempt]) => attempt === what),
        `${what} was tried`,
      );
      if (/^(proxy|http) /.test(what)) assert.ok(egress.has(what), `${what}: the proxy refused it (403)`);
    }
    // The test hosts saw nothing: no connection to the Redis, no request to the web host, no name asked for.
    assert.equal(
      await hosts.redisConnections(),
      redisConnectionsBefore + 1,
      'only this check reached the Redis',
    );
    assert.doesNotMatch(hosts.webLog(), /GET|CONNECT|POST/, 'the web host got no request');
    const asked = resolver.queries.filter((name) => name.includes(facts.marker) || name === INTERNET_HOST);
    assert.deepEqual(asked, [], 'no refused name, and no data, reached a resolver');
    // The install stage names the refusals, and the metric counts them.
    const sha = built.get('egress-from-setup-py')?.report.commitSha ?? '';
    const log = (await queue.getJobLogs(buildJobId(sha), 0, -1)).logs.join('\n');
    assert.match(
      log,
      new RegExp(`stage install passed: .*egress refused: .*${service.replaceAll('.', '\\.')}:6379`),
    );
    assert.match(log, /egress refused: rebind-metadata\.test:443 \(it resolves to 169\.254\.169\.254/);
    const metrics = await (await fetch(`${worker.metricsUrl}/metrics`)).text();
    assert.ok(Number(/^ci_egress_refused_total (\d+)/m.exec(metrics)?.[1]) >= 8, 'refusals are counted');

    const filled = attacks(built.get('fill-the-disk')?.entries ?? new Map());
    assert.ok(
      [...filled.values()].some((outcome) => /^stopped OSError/.test(outcome)),
      'writes were refused',
    );
    const fell = (freeBefore - lowestFree) / MIB;
    t.diagnostic(`DISK the host's free space fell by at most ${fell.toFixed(0)} MiB (limit ${DISK_MB} MiB)`);
    assert.ok(fell < DISK_MB + DISK_SLACK_MB, `the host's free space fell by ${fell.toFixed(0)} MiB`);

    const symlinks = built.get('symlinks-out')?.entries ?? new Map();
    assert.equal(symlinks.get('source/passwd')?.linkname, '/etc/passwd', 'links are stored as links');
    assert.equal(symlinks.get('source/canary')?.type, 'symlink');
    const passwd = attacks(symlinks).get('passwd') ?? '';
    assert.match(passwd, /^CONTENT .*build:x:\d+:\d+:ci-runner build/, 'the sandbox has its own passwd');
    assert.doesNotMatch(passwd, /root:x:0:0:root:\/root:\/bin\/bash|cloudsdk/);
    assert.match(attacks(symlinks).get('canary') ?? '', /^blocked/);

    const swapped = [...(built.get('swap-keep-for-a-link')?.entries.keys() ?? [])];
    assert.deepEqual(
      swapped.filter((path) => path.startsWith('outputs/')),
      [],
      'a keep directory swapped for a link keeps nothing',
    );
    const inside = built.get('links-inside-keep')?.entries ?? new Map();
    assert.equal(
      inside.get('outputs/plain.txt')?.content,
      'kept\n',
      'the plain file beside the links is kept',
    );
    assert.deepEqual(
      [...inside.keys()].filter((path) => path.startsWith('outputs/') && path !== 'outputs/plain.txt'),
      [],
      'no link inside keep was followed',
    );
    const imitated = built.get('imitates-the-sandbox')?.report;
    assert.equal(imitated?.attempt, 1, "a build's own output imitating bubblewrap is not retried");

    const flood = built.get('flood-stdout')?.entries.get('reports/test.log')?.content ?? '';
    assert.ok(flood.length < 300 * 1024, `stage output kept to its tail (${flood.length} bytes)`);
  });

  test('git bombs fail their own build before a file is written; a build beside them finishes; memory stays bounded', async (t) => {
    // A tree holding one tree ten times, six levels deep: 10^6 files from a few hundred bytes of objects.
    const bomb = await harness.newRepo('git-bomb');
    await bomb.commit(cleanProject(), 'a project');
    let tree = bomb.git(
      ['mktree'],
      `100644 blob ${bomb.git(['hash-object', '-w', '--stdin'], 'boom\n')}\tf\n`,
    );
    for (let level = 0; level < 6; level += 1) {
      const entries = Array.from({ length: 10 }, (_, i) => `040000 tree ${tree}\td${i}\n`).join('');
      tree = bomb.git(['mktree'], entries);
    }
    const bombSha = bomb.git(['commit-tree', tree, '-p', 'HEAD', '-m', 'bomb']);
    bomb.git(['push', '--quiet', '--force', 'origin', `${bombSha}:refs/heads/main`]);
    // One file of 150 MiB of zeros: a few hundred KiB in the pack, over the 100 MiB a checkout file may be.
    const huge = await harness.newRepo('huge-blob');
    await huge.commit(cleanProject(), 'a project');
    const zeros = huge.git(['hash-object', '-w', '--stdin'], '\0'.repeat(150 * 1024 * 1024));
    const hugeTree = huge.git(['mktree'], `100644 blob ${zeros}\tzeros.bin\n`);
    const hugeSha = huge.git(['commit-tree', hugeTree, '-p', 'HEAD', '-m', 'huge']);
    huge.git(['push', '--quiet', '--force', 'origin', `${hugeSha}:refs/heads/main`]);
    const beside = await harness.newRepo('beside-the-bomb');
    const besideSha = await beside.commit(cleanProject(), 'clean');
    beside.push('main');

    const rssBefore = process.memoryUsage().rss;
    let rssPeak = rssBefore;
    const sampler = setInterval(() => {
      rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
    }, 50);
    try {
      for (const [sha, url] of [
        [bombSha, bomb.url],
        [hugeSha, huge.url],
        [besideSha, beside.url],
      ] as const) {
        await harness.announce({ sha, repositoryUrl: url });
      }
      const [bombReport, hugeReport, besideReport] = await (Promise.all(
        [bombSha, hugeSha, besideSha].map((sha) => harness.reports.waitFor(sha, 300_000)),
      ) as Promise<[BuildReport, BuildReport, BuildReport]>);
      assert.equal(bombReport.status, 'FAILED');
      assert.match(bombReport.error, /repository too large: over 100000 files and directories/);
      assert.equal(hugeReport.status, 'FAILED');
      assert.match(
        hugeReport.error,
        /repository too large: zeros\.bin is 150 MiB \(one file may be 100 MiB\)/,
      );
      assert.equal(besideReport.status, 'PASSED', besideReport.error);
    } finally {
      clearInterval(sampler);
    }
    // The checkout never reads either bomb (10^6 files, or 150 MiB inflated); isomorphic-git's fetch still inflates
    // each fetched object once to index the pack, so the huge blob costs its size once, in the fetch.
    const grewMiB = (rssPeak - rssBefore) / 1024 / 1024;
    t.diagnostic(`worker memory grew by ${grewMiB.toFixed(0)} MiB during the bombs`);
    assert.ok(grewMiB < 512, `the worker's memory grew by ${grewMiB.toFixed(0)} MiB`);
    assert.equal((await fetch(`${worker.metricsUrl}/readyz`)).status, 200, 'the worker is still ready');
  });

  test("a repository's pins install nothing but exact ruff or black versions", async () => {
    const { report } = built.get('pins-to-install-anything') ?? {};
    const lint = report?.stages.find((stage) => stage.name === 'lint')?.summary ?? '';
    const pins = await readFile(new URL('../../python/requirements-tools.txt', import.meta.url), 'utf8');
    const ruff = /^ruff==(\S+)$/m.exec(pins)?.[1];
    assert.equal(lint, `lint clean (ruff ${ruff}, ruff format ${ruff})`, "the runner's own versions");
    const tools = join(harness.space.config.cacheDir, 'tools');
    for (const toolchain of await readdir(tools)) {
      const pinned = await readdir(join(tools, toolchain, 'pinned')).catch(() => []);
      for (const name of pinned)
        assert.match(name, /^(ruff|black)-\d+(\.\d+)+$/, `${toolchain}/pinned/${name}`);
    }
  });

  test('nothing outlives its build: no daemon, no stray process of a build user', () => {
    const processes = execFileSync('ps', ['-eo', 'uid=,args='], { encoding: 'utf8' }).split('\n');
    assert.deepEqual(
      processes.filter((line) => line.includes(`sleep ${daemonSeconds(facts)}`)),
      [],
      'the daemon was killed with its stage',
    );
    const base = harness.space.config.sandbox.uidBase;
    const strays = processes.filter((line) => {
      const uid = Number(line.trim().split(/\s+/)[0]);
      return uid >= base && uid < base + 65_536;
    });
    assert.deepEqual(strays, [], 'no process of any build user is left');
    for (const path of [
      `/tmp/${facts.marker}`,
      `${facts.workDir}/${facts.marker}`,
      `/etc/${facts.marker}`,
      `/root/${facts.marker}`,
      `${facts.cacheDir}/${facts.marker}`,
      `${facts.runnerSource}/${facts.marker}`,
      join(facts.cacheDir, 'uv', 'hostile'),
      join(facts.cacheDir, 'envs', 'hostile'),
    ]) {
      assert.equal(existsSync(path), false, `${path} was not written`);
    }
  });

  test('the caches are what the runner put there: a clean build after the attacks gets the genuine packages', async () => {
    const now = await sharedSix();
    for (const [dir, content] of sharedSixBefore) {
      assert.equal(now.get(dir), content, `six.py of the shared environment ${dir} is unchanged`);
    }
    const after_ = await buildOne('after-attacks', {
      ...cleanProject(),
      'requirements.txt': 'six==1.17.0\n',
      ...genuineSixTest(),
    });
    assert.equal(after_.report.status, 'PASSED', after_.report.error);
    assert.equal(after_.report.testsRun, 3);
  });

  test('the clean build after the attacks reports what the tools say run directly, unsandboxed', async () => {
    const repo = await harness.newRepo('oracle');
    const sha = await repo.commit(cleanProject(), 'clean');
    repo.push('main');
    await harness.announce({ sha, repositoryUrl: repo.url });
    const report = await harness.reports.waitFor(sha, 300_000);
    assert.equal(report.status, 'PASSED', report.error);

    const work = await mkdtemp(join(tmpdir(), 'hostile-oracle-'));
    try {
      const tree = join(work, 'tree');
      // Asynchronous: the git server answers from this process.
      await run('git', ['clone', '--quiet', repo.url, tree], { timeout: 60_000 });
      await run('python3', ['-m', 'venv', join(work, 'venv')]);
      const python = join(work, 'venv', 'bin', 'python');
      const pins = (await readFile('python/requirements-test.txt', 'utf8'))
        .split('\n')
        .filter((line) => /^[a-z]/.test(line));
      await run(python, ['-m', 'pip', 'install', '--quiet', ...pins]);
      await run(python, ['-m', 'coverage', 'run', '-m', 'pytest', '-q', '-m', 'fast'], { cwd: tree });
      await run(python, ['-m', 'coverage', 'json', '-o', join(work, 'coverage.json')], { cwd: tree });
      const totals = JSON.parse(await readFile(join(work, 'coverage.json'), 'utf8')).totals;
      assert.equal(report.lineCoverage, (totals.covered_lines / totals.num_statements) * 100);
      assert.equal(report.testsRun, 2);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});
