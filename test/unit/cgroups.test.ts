import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { v2BuildsParent, WORKER_LEAF } from '../../src/sandbox/cgroups.js';

// A directory tree standing in for a cgroup v2 hierarchy (this machine kind has v1): where builds' groups go.
test("cgroup v2: builds' groups nest under the worker's own group, never at the hierarchy's root", async () => {
  const root = await mkdtemp(join(tmpdir(), 'ci-runner-cgroup2-'));
  try {
    const own = '/system.slice/ci-runner-worker.service';
    await mkdir(join(root, own), { recursive: true });
    await writeFile(join(root, own, 'cgroup.procs'), '4242\n');
    const parent = await v2BuildsParent(root, own, '+memory +pids\n');
    assert.equal(parent, join(root, own, 'ci-runner'));
    assert.equal(await readFile(join(root, own, 'cgroup.subtree_control'), 'utf8'), '+memory +pids\n');
    assert.equal(
      await readFile(join(root, own, 'ci-runner', 'cgroup.subtree_control'), 'utf8'),
      '+memory +pids\n',
    );
    // Started again from the leaf an earlier start moved it into: the same parent, not one level deeper.
    assert.equal(await v2BuildsParent(root, `${own}/${WORKER_LEAF}`, '+memory +pids\n'), parent);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
