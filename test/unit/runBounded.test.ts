import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runBounded } from '../../src/host/runBounded.js';

// Whether a process still runs (a killed one not yet reaped is a zombie: it runs no more), after a short grace.
async function alive(pid: number): Promise<boolean> {
  for (let tries = 0; tries < 20; tries += 1) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (!stat || state === 'Z') return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

describe('runBounded on real processes', () => {
  let dir: string;
  const options = (extra: Partial<Parameters<typeof runBounded>[2]> = {}) => ({
    cwd: dir,
    env: { PATH: '/usr/bin:/bin' },
    timeoutMs: 10_000,
    signal: new AbortController().signal,
    ...extra,
  });
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ci-runner-run-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('an exit status, its output, and only the environment given', async () => {
    const result = await runBounded('sh', ['-c', 'echo "out $FOO $HOME"; echo err >&2; exit 3'], {
      ...options(),
      env: { PATH: '/usr/bin:/bin', FOO: 'bar' },
    });
    assert.equal(result.kind, 'exited');
    if (result.kind !== 'exited') return;
    assert.equal(result.exitCode, 3);
    assert.equal(result.stdout, 'out bar \n');
    assert.equal(result.stderr, 'err\n');
  });

  test('over its time limit: timedOut, and the whole process group is gone, grandchildren too', async () => {
    const pidFile = join(dir, 'grandchild.pid');
    const result = await runBounded(
      'sh',
      ['-c', `sleep 60 >/dev/null 2>&1 & echo $! > ${pidFile}; wait`],
      options({ timeoutMs: 300 }),
    );
    assert.equal(result.kind, 'timedOut');
    const grandchild = Number((await readFile(pidFile, 'utf8')).trim());
    assert.ok(grandchild > 0);
    assert.equal(await alive(grandchild), false, 'the background sleep was killed with its group');
  });

  test('a command that exits leaves no process behind (a daemon it forked is killed)', async () => {
    const pidFile = join(dir, 'daemon.pid');
    const result = await runBounded(
      'sh',
      ['-c', `sleep 60 >/dev/null 2>&1 & echo $! > ${pidFile}; exit 0`],
      options(),
    );
    assert.equal(result.kind, 'exited');
    const daemon = Number((await readFile(pidFile, 'utf8')).trim());
    assert.equal(await alive(daemon), false);
  });

  test('canceled through its signal', async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 200);
    const result = await runBounded('sleep', ['30'], options({ signal: controller.signal }));
    assert.equal(result.kind, 'canceled');
    assert.ok(result.durationMs < 10_000);
  });

  test('a missing program: notStarted with the reason, nothing thrown', async () => {
    const result = await runBounded('/no/such/program', [], options());
    assert.equal(result.kind, 'notStarted');
    if (result.kind === 'notStarted') assert.match(result.message, /ENOENT|no such/i);
  });

  test('the output tail is bounded, and the log file gets the command line and the tail', async () => {
    const logFile = join(dir, 'run.log');
    const result = await runBounded('sh', ['-c', 'head -c 200000 /dev/zero | tr "\\0" x; echo; echo END'], {
      ...options(),
      tailBytes: 1000,
      logFile,
    });
    assert.equal(result.kind, 'exited');
    if (result.kind !== 'exited') return;
    assert.ok(result.stdout.length < 1100, `${result.stdout.length}`);
    assert.match(result.stdout, /^\[\.\.\.output truncated\.\.\.\]\n/);
    assert.match(result.stdout, /END\n$/);
    const log = await readFile(logFile, 'utf8');
    assert.match(log, /^\$ sh -c /);
    assert.ok(log.length < 2000, `${log.length}`);
  });

  // A wrapper that reports its pid as bubblewrap does (fd 3, then waits on fd 4) and fails to set itself up, as
  // bubblewrap did under load ("bwrap: loopback: Failed RTM_NEWADDR"), its first `failures` times; once set up, it
  // says so on fd 6 as the sandbox's last step does.
  const flakyWrapper = (failures: number, counter: string) => ({
    wrap: (command: string, args: string[]) => ({
      command: 'sh',
      args: [
        '-c',
        [
          'echo "{\\"child-pid\\": $$}" >&3; exec 3>&-; read -r go <&4',
          `n=$(cat ${counter} 2>/dev/null || echo 0); echo $((n + 1)) > ${counter}`,
          `if [ "$n" -lt ${failures} ]; then echo "bwrap: loopback: Failed RTM_NEWADDR: No child processes" >&2; exit 1; fi`,
          // The sandbox's last step: the started byte on the runner's channel, then the command.
          'printf 1 >&6; exec 6>&-',
          'exec "$@"',
        ].join('\n'),
        'wrapper',
        command,
        ...args,
      ],
    }),
    started: async () => () => undefined,
  });

  test('a sandbox that fails to set up is tried again; the command runs once it does', async () => {
    const counter = join(dir, 'tries-ok');
    const result = await runBounded('sh', ['-c', 'echo ran; exit 1'], {
      ...options(),
      launch: flakyWrapper(2, counter),
    });
    assert.equal(result.kind, 'exited');
    if (result.kind === 'exited') assert.deepEqual([result.exitCode, result.stdout], [1, 'ran\n']);
    assert.equal((await readFile(counter, 'utf8')).trim(), '3');
  });

  test("a command that prints bubblewrap's own failure is its own failure: not retried, not a sandbox fault", async () => {
    const counter = join(dir, 'tries-imitated');
    const result = await runBounded(
      'sh',
      ['-c', 'echo "bwrap: loopback: Failed RTM_NEWADDR: No child processes" >&2; exit 1'],
      { ...options(), launch: flakyWrapper(0, counter) },
    );
    assert.equal(result.kind, 'exited');
    if (result.kind === 'exited') assert.equal(result.exitCode, 1);
    assert.equal((await readFile(counter, 'utf8')).trim(), '1', 'run once');
  });

  test('a sandbox that keeps failing to set up is an infrastructure fault, not the command failing', async () => {
    const counter = join(dir, 'tries-bad');
    await assert.rejects(
      runBounded('true', [], { ...options(), launch: flakyWrapper(99, counter) }),
      (error: Error & { code?: string; retriable?: boolean }) => {
        assert.equal(error.code, 'SANDBOX_FAULT');
        assert.equal(error.retriable, true);
        assert.match(error.message, /bwrap: loopback: Failed RTM_NEWADDR/);
        return true;
      },
    );
    assert.equal((await readFile(counter, 'utf8')).trim(), '3');
  });
});
