import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ownerState, writeOwner } from '../../src/host/ownerFile.js';
import { withDirLock } from '../../src/host/withDirLock.js';
import { CiError } from '../../src/ops/errors.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('withDirLock on a real filesystem', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ci-runner-lock-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('holders never overlap, and the lock is gone afterwards', async () => {
    const lock = join(dir, 'a.lock');
    let inside = 0;
    let most = 0;
    const work = async () => {
      inside += 1;
      most = Math.max(most, inside);
      await sleep(20);
      inside -= 1;
    };
    await Promise.all(Array.from({ length: 5 }, () => withDirLock(lock, work, { timeoutMs: 5_000 })));
    assert.equal(most, 1);
    await assert.rejects(readFile(join(lock, 'owner')), { code: 'ENOENT' });
  });

  test('released when the work throws', async () => {
    const lock = join(dir, 'b.lock');
    await assert.rejects(
      withDirLock(lock, async () => Promise.reject(new Error('boom')), { timeoutMs: 1_000 }),
      /boom/,
    );
    assert.equal(await withDirLock(lock, async () => 'again', { timeoutMs: 1_000 }), 'again');
  });

  test('a lock whose holder died (a real process, now gone) is taken over at once', async () => {
    const lock = join(dir, 'c.lock');
    const child = spawn('true');
    const pid = child.pid as number;
    await new Promise((resolve) => child.on('exit', resolve));
    await mkdir(lock);
    await writeFile(join(lock, 'owner'), `${hostname()} ${pid}\n`);
    const started = Date.now();
    assert.equal(await withDirLock(lock, async () => 'taken', { timeoutMs: 5_000 }), 'taken');
    assert.ok(Date.now() - started < 2_000);
  });

  test('a live holder is waited for until the time limit: LOCK_TIMEOUT, retriable', async () => {
    const lock = join(dir, 'd.lock');
    await mkdir(lock);
    await writeFile(join(lock, 'owner'), `${hostname()} ${process.pid}\n`);
    await assert.rejects(
      withDirLock(lock, async () => 'never', { timeoutMs: 200 }),
      (error: unknown) => {
        assert.ok(error instanceof CiError);
        assert.equal(error.code, 'LOCK_TIMEOUT');
        assert.equal(error.retriable, true);
        return true;
      },
    );
    await rm(lock, { recursive: true });
  });

  test('waiters on a dead holder take the lock over one at a time: never two inside', async () => {
    const lock = join(dir, 'f.lock');
    const child = spawn('true');
    const pid = child.pid as number;
    await new Promise((resolve) => child.on('exit', resolve));
    await mkdir(lock);
    await writeFile(join(lock, 'owner'), `${hostname()} ${pid}\n`);
    let inside = 0;
    let most = 0;
    const work = async () => {
      inside += 1;
      most = Math.max(most, inside);
      await sleep(30);
      inside -= 1;
    };
    await Promise.all(Array.from({ length: 8 }, () => withDirLock(lock, work, { timeoutMs: 10_000 })));
    assert.equal(most, 1);
  });

  test("a holder's pid reused by another process (a restarted container's worker is pid 1 again) is dead", async () => {
    const lock = join(dir, 'g.lock');
    await mkdir(lock);
    const boot = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
    // This very pid, alive, but started at another time: not the process that wrote the owner file.
    await writeFile(join(lock, 'owner'), `${hostname()} ${process.pid} ${boot} 1\n`);
    assert.equal((await ownerState(lock)).state, 'dead');
    await writeOwner(lock);
    assert.equal((await ownerState(lock)).state, 'alive');
    await rm(lock, { recursive: true });
  });

  test('a lock older than staleMs (its holder on another host) is taken over', async () => {
    const lock = join(dir, 'e.lock');
    await mkdir(lock);
    await writeFile(join(lock, 'owner'), 'another-host 1\n');
    const old = new Date(Date.now() - 60_000);
    await utimes(lock, old, old);
    assert.equal(await withDirLock(lock, async () => 'stale', { timeoutMs: 2_000, staleMs: 1_000 }), 'stale');
  });
});
