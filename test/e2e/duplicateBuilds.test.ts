import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import type { BuildReport } from '../../src/delivery/contracts.js';
import { connectRedis, RETENTION_SECONDS } from '../../src/delivery/queue.js';
import { ReportStore } from '../../src/delivery/reportStore.js';
import { settleReport } from '../../src/worker/settleReport.js';
import { testLogger } from '../support/harness.js';
import { createPipelineHarness, type PipelineHarness } from '../support/pipelineHarness.js';
import { cleanProject } from '../support/pythonProject.js';

// Two builds of one commit (a worker stopped past its lock, and the worker that took the job over) both write an
// artefact; whichever finishes first, the standing report names a file whose sha256 is its artefact_sha256, and the
// other build's artefact is gone.
describe('two builds of one commit: the artefact a report names is the one it was made with', () => {
  let harness: PipelineHarness;
  let redis: Redis;
  let store: ReportStore;
  const logger = testLogger('duplicate-builds');

  before(async () => {
    harness = await createPipelineHarness();
    redis = connectRedis(process.env.REDIS_URL ?? 'redis://127.0.0.1:16379');
    store = new ReportStore(redis, `duplicates-${Date.now()}`, RETENTION_SECONDS);
  });

  after(async () => {
    redis?.disconnect();
    await harness?.close();
  });

  const fileSha256 = async (report: BuildReport) =>
    createHash('sha256')
      .update(await readFile(fileURLToPath(report.artefactUrl)))
      .digest('hex');
  const artefactsOf = async (sha: string) =>
    (await readdir(join(harness.root, 'artefacts'))).filter((name) => name.startsWith(sha));

  for (const order of ['the first build', 'the second build'] as const) {
    test(`${order} finishes first`, async () => {
      const repo = await harness.newRepo(`dup-${order.replace(/ /g, '-')}`);
      const sha = await repo.commit(cleanProject(), 'clean');
      repo.push('main');
      const first = await harness.build(repo, sha);
      const second = await harness.build(repo, sha);
      assert.equal(first.status, 'PASSED', first.error);
      assert.notEqual(first.artefactUrl, second.artefactUrl, 'each build wrote its own artefact');
      assert.equal((await artefactsOf(sha)).length, 2);

      const [winner, loser] = order === 'the first build' ? [first, second] : [second, first];
      const settled = await settleReport(store, winner, undefined, logger);
      const late = await settleReport(store, loser, undefined, logger);
      const standing = await store.get(sha);
      assert.deepEqual(standing, winner);
      assert.deepEqual(late, winner, 'the later build is told which report stands');
      assert.deepEqual(settled, winner);
      assert.equal(await fileSha256(winner), winner.artefactSha256);
      assert.ok(!existsSync(fileURLToPath(loser.artefactUrl)), "the later build's artefact is discarded");
      assert.deepEqual(await artefactsOf(sha), [fileURLToPath(winner.artefactUrl).split('/').at(-1)]);
    });
  }

  test("a retry's verdict replaces an ERRORED report, and the ERRORED build's artefact goes with it", async () => {
    const repo = await harness.newRepo('dup-errored');
    const sha = await repo.commit(cleanProject(), 'clean');
    repo.push('main');
    const errored: BuildReport = {
      ...(await harness.build(repo, sha)),
      status: 'ERRORED',
      error: 'disk full',
    };
    await settleReport(store, errored, undefined, logger);
    const retry = await harness.build(repo, sha);
    const standing = await settleReport(store, retry, await store.get(sha), logger);
    assert.deepEqual(standing, retry);
    assert.equal(await fileSha256(retry), retry.artefactSha256);
    assert.ok(!existsSync(fileURLToPath(errored.artefactUrl)));
  });
});
