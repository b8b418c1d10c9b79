import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, chown, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { RunResult } from '../../src/host/runBounded.js';
import { egressConfig } from '../../src/ops/egressConfig.js';
import { ConfigError } from '../../src/ops/errors.js';
import { prepareSandbox } from '../../src/sandbox/sandboxHost.js';
import { testLogger } from '../support/harness.js';

const run = promisify(execFile);
const REDIS_PORT = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:16379').port;

/** What each command printed and what the sandbox enforced meanwhile, and the sandbox's description of itself. */
type ProbeOutput = [...Array<RunResult & { stdout: string; events: string[] }>, { description: string }];

/** What urllib gets through the proxy: each URL with its status, or "refused". */
const INDEX_PROBE = [
  'import urllib.request as u',
  `for url in ['https://pypi.org/simple/six/', 'https://example.org/', 'https://127.0.0.1:${REDIS_PORT}/']:`,
  '  try: print(u.urlopen(url, timeout=30).status)',
  "  except Exception as e: print('refused' if '403' in str(e) else e)",
].join('\n');

/**
 * 4 MiB files (the probe's file-size limit is 8 MiB) written one every 50 ms into the build's tmp, far past the
 * probe's 256 MiB disk: the probe's sandbox has no filesystem of its own, so the runner's watcher must stop it.
 */
const FILL = {
  script:
    'for i in $(seq 1 150); do head -c 4194304 /dev/zero > "$TMPDIR/fill-$i" || exit 3; sleep 0.05; done; echo all-written',
};

// The commands every probe runs: who it is, what it sees, what it may write, where it may connect.
const COMMANDS = [
  { script: 'id -u; grep CapEff /proc/self/status; ls /proc | grep -c "^[0-9]"' },
  { script: 'cat /etc/passwd; ls /root 2>&1; ls /home 2>&1 | head -1' },
  {
    script:
      'touch /usr/hostile 2>/dev/null && echo wrote-usr; touch hello.txt 2>/dev/null && echo wrote-src; true',
  },
  { script: 'touch hello.txt && echo wrote-src', access: { write: ['src'] } },
  { script: `bash -c 'echo > /dev/tcp/127.0.0.1/${REDIS_PORT}' 2>/dev/null && echo reached-redis; true` },
  {
    // Through the egress proxy (BUILD_EGRESS=index, the default): the index answers; the host's Redis, another
    // host and any name lookup do not; a direct connection has no route.
    script: `getent hosts pypi.org >/dev/null && echo resolved; python3 -I -c "${INDEX_PROBE}"; bash -c 'echo > /dev/tcp/198.51.100.7/443' 2>/dev/null && echo direct; true`,
    access: { network: true },
  },
  FILL,
];

/** BUILD_EGRESS=internet: slirp4netns, with DNS, and the host's loopback closed. */
const INTERNET = [
  {
    // Up to three lookups a second apart: one resolver hiccup on the machine is not the sandbox's doing.
    script: `for i in 1 2 3; do getent hosts pypi.org >/dev/null && { echo resolved; break; }; sleep 1; done; bash -c 'echo > /dev/tcp/10.0.2.2/${REDIS_PORT}' 2>/dev/null && echo reached-host; true`,
    access: { network: true },
  },
];

async function probe(asUser?: number, internet = false): Promise<ProbeOutput> {
  const dir = await mkdtemp(join(tmpdir(), 'sandbox-probe-'));
  try {
    const args = [
      '--import',
      'tsx',
      'test/support/sandboxProbe.ts',
      dir,
      JSON.stringify(
        internet ? { commands: INTERNET, egress: { BUILD_EGRESS: 'internet' } } : { commands: COMMANDS },
      ),
    ];
    if (asUser === undefined) return JSON.parse((await run('node', args)).stdout);
    await chown(dir, asUser, asUser);
    const user = [`--reuid=${asUser}`, `--regid=${asUser}`, '--clear-groups'];
    return JSON.parse((await run('setpriv', [...user, process.execPath, ...args])).stdout);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('the build sandbox itself', () => {
  let asRoot: ProbeOutput;
  let asUser: ProbeOutput;
  let rootInternet: ProbeOutput;
  let userInternet: ProbeOutput;

  // The unprivileged probe runs this checkout's code: every directory above it must let others pass (a clone in a
  // mkdtemp directory is 0700). Restored afterwards.
  const opened: Array<[string, number]> = [];

  before(async () => {
    for (let dir = process.cwd(); dir !== dirname(dir); dir = dirname(dir)) {
      const { mode } = await stat(dir);
      if ((mode & 0o001) === 0) {
        opened.push([dir, mode & 0o7777]);
        await chmod(dir, (mode & 0o7777) | 0o001);
      }
    }
    [asRoot, asUser, rootInternet, userInternet] = await Promise.all([
      probe(),
      probe(65_534),
      probe(undefined, true),
      probe(65_534, true),
    ]);
  });

  after(async () => {
    for (const [dir, mode] of opened) await chmod(dir, mode);
  });

  for (const [who, output, uid, internet] of [
    ['started by root', () => asRoot, (id: number) => id >= 800_000 && id < 865_536, () => rootInternet],
    ['started by an unprivileged user', () => asUser, (id: number) => id === 65_534, () => userInternet],
  ] as const) {
    test(`${who}: an unprivileged user with no capabilities, alone in its PID namespace`, () => {
      const [identity] = output();
      assert.ok(identity && 'stdout' in identity);
      const [id, caps, processes] = identity.stdout.trim().split('\n');
      assert.ok(uid(Number(id)), `uid ${id}`);
      assert.match(caps ?? '', /CapEff:\s+0+$/);
      assert.ok(Number(processes) <= 4, `${processes} processes visible`);
    });

    test(`${who}: its own passwd, no /root or /home content, a read-only system and checkout unless granted`, () => {
      const [, files, writes, granted] = output();
      assert.ok(files && 'stdout' in files && writes && 'stdout' in writes && granted && 'stdout' in granted);
      assert.match(files.stdout, /^build:x:\d+:\d+:ci-runner build:\/ci\/home:\/bin\/sh$/m);
      assert.doesNotMatch(files.stdout, /\.ssh|cloudsdk|\.bashrc/);
      assert.equal(writes.stdout.trim(), '', 'neither /usr nor the read-only checkout was written');
      assert.equal(granted.stdout.trim(), 'wrote-src');
    });

    test(`${who}: no network at all, and during install only the package index, through the proxy`, () => {
      const [, , , , offline, install] = output();
      assert.ok(offline && 'stdout' in offline && install && 'stdout' in install);
      assert.equal(offline.stdout.trim(), '', "the host's Redis is out of reach");
      assert.deepEqual(
        install.stdout.trim().split('\n'),
        ['200', 'refused', 'refused'],
        'no name resolves in the box; the index answers; another host and the host loopback are refused',
      );
    });

    test(`${who}: without a filesystem of its own, the runner stops a build past its disk limit`, () => {
      const filled = output()[6];
      assert.ok(filled && 'stdout' in filled);
      assert.equal(filled.stdout.trim(), '', 'it was stopped before writing 600 MiB');
      assert.notEqual(filled.kind === 'exited' && filled.exitCode, 0);
      assert.deepEqual(filled.events, ['disk limit of 256 MiB reached']);
      const said = output().at(-1) as { description: string };
      assert.match(said.description, /disk: 256 MiB, watched by the runner/);
    });

    test(`${who}: with BUILD_EGRESS=internet, the internet during install but not the host's loopback`, () => {
      const [install, said] = internet();
      assert.ok(install && 'stdout' in install && said && 'description' in said);
      assert.equal(install.stdout.trim(), 'resolved', 'names resolve; the host loopback stays closed');
      assert.match(
        said.description,
        /install reaches the internet \(BUILD_EGRESS=internet; host loopback blocked\)/,
      );
    });
  }

  test('says how it contains builds, and what it could not apply', () => {
    const rootSays = (asRoot.at(-1) as { description: string }).description;
    const userSays = (asUser.at(-1) as { description: string }).description;
    assert.match(rootSays, /^bubblewrap as uid \d+ \(unprivileged, all capabilities dropped\)/);
    assert.match(rootSays, /memory 512 MiB \(cgroup v[12]/);
    assert.match(rootSays, /egress: package index only \(2 hosts: pypi\.org, files\.pythonhosted\.org\)/);
    assert.match(userSays, /in a user namespace/);
    assert.match(
      userSays,
      /memory 512 MiB per process \(RLIMIT_AS; no cgroup: the runner is not root; no memory limit over the whole build\)/,
    );
  });

  test('fails closed: without bubblewrap the runner refuses, naming what is missing and the opt-out', async () => {
    const request = {
      enabled: true,
      uidBase: 800_000,
      hostPath: '/nonexistent',
      readOnly: [],
      tools: '/',
      python: '/usr/bin/python3',
      egress: egressConfig({}),
    };
    await assert.rejects(prepareSandbox(request, testLogger('sandbox')), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /needs bwrap \(Debian package bubblewrap\).*SANDBOX=off/);
      return true;
    });
    const off = await prepareSandbox({ ...request, enabled: false }, testLogger('sandbox'));
    assert.deepEqual(off, { enabled: false });
  });
});
