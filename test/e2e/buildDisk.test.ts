import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { readdir, readFile, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fillEveryWritablePlace } from '../support/fillDisk.js';
import { createPipelineHarness, type PipelineHarness } from '../support/pipelineHarness.js';
import { cleanProject } from '../support/pythonProject.js';

// A build has a filesystem of its own (the worker is root): whatever it writes, the host's disk gives it at most its
// limit, and the report says the limit was reached.
const py = (...lines: string[]) => `${lines.join('\n')}\n`;
const MIB = 1024 * 1024;

describe("a build's own disk", { skip: process.getuid?.() !== 0 && 'needs a root worker' }, () => {
  let harness: PipelineHarness;

  before(async () => {
    harness = await createPipelineHarness({ BUILD_DISK_MB: '512' });
  });

  after(async () => {
    await harness.close();
  });

  test('filling every writable place stops at the limit: FAILED, "disk limit of 256 MiB reached"', async () => {
    const repo = await harness.newRepo('fill-the-disk');
    const sha = await repo.commit(
      {
        ...cleanProject(),
        'pyproject.toml': `${cleanProject()['pyproject.toml']}\n[tool.ci-runner]\ndisk-mb = 256\n`,
        'tests/test_fill.py': py('import os', '', 'import pytest', '', ...fillEveryWritablePlace(40, 100)),
      },
      'fill the disk',
    );
    repo.push('main');
    const work = join(harness.root, 'work');
    const freeBytes = async () => {
      const stats = await statfs(harness.root);
      return stats.bavail * stats.bsize;
    };
    const start = await freeBytes();
    let lowest = start;
    const sampler = setInterval(() => {
      void freeBytes().then((free) => {
        lowest = Math.min(lowest, free);
      });
    }, 100);
    const report = await harness.build(repo, sha).finally(() => clearInterval(sampler));
    assert.equal(report.status, 'FAILED', report.error);
    // The tests filled it: theirs is the failure, not lint's beside them nor the runner's stages after them.
    assert.match(report.error, /^test: [^;]*; disk limit of 256 MiB reached$/);
    assert.deepEqual(report.lintErrors, []);
    assert.match(report.sandbox, /disk: 256 MiB \(its own ext4 filesystem\)/);
    const fell = (start - lowest) / MIB;
    assert.ok(fell < 256 + 64, `the host's free space fell by ${fell.toFixed(0)} MiB`);
    // Nothing is left: no mount under the work directory, no image.
    const mounts = await readFile('/proc/self/mountinfo', 'utf8');
    assert.ok(!mounts.includes(work), 'no build filesystem is still mounted');
    assert.deepEqual(await readdir(work), []);
  });

  test('a build within its limit passes, and says what it had', async () => {
    const repo = await harness.newRepo('within-the-disk');
    const sha = await repo.commit(cleanProject(), 'clean');
    repo.push('main');
    const report = await harness.build(repo, sha);
    assert.equal(report.status, 'PASSED', `${report.error} ${report.lintErrors}`);
    assert.match(report.sandbox, /disk: 512 MiB \(its own ext4 filesystem\)/);
  });
});
