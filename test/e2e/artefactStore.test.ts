import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { GetObjectCommand, HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Queue } from 'bullmq';
import { type RunningBoard, startBoard } from '../../src/board/board.js';
import { createArtefactStore } from '../../src/delivery/artefactStore.js';
import { encodeBuildReport } from '../../src/delivery/contracts.js';
import { buildJobId, connectRedis } from '../../src/delivery/queue.js';
import { cleanProject } from '../support/pythonProject.js';
import { createRunnerHarness, type RunnerHarness } from '../support/runnerHarness.js';

const run = promisify(execFile);
const S3 = resolve('scripts/s3.sh');
const py = (...lines: string[]) => `${lines.join('\n')}\n`;

// Writes 12 MiB of seeded random bytes and the environment it saw into $CI_RUNNER_KEEP (the artefact's outputs/).
const KEEPER = py(
  'import json',
  'import os',
  'import random',
  '',
  'import pytest',
  '',
  '',
  '@pytest.mark.fast',
  'def test_keeps_files():',
  '    keep = os.environ["CI_RUNNER_KEEP"]',
  '    with open(os.path.join(keep, "big.bin"), "wb") as handle:',
  '        handle.write(random.Random(5).randbytes(12 * 1024 * 1024))',
  '    with open(os.path.join(keep, "env.json"), "w") as handle:',
  '        json.dump(dict(os.environ), handle)',
);

describe('ARTEFACT_STORE=s3 against a real S3 server (S3Proxy, started by scripts/s3.sh)', () => {
  let harness: RunnerHarness;
  let s3env: Record<string, string>;
  let client: S3Client;
  let board: RunningBoard;
  let redis: ReturnType<typeof connectRedis>;
  let queue: Queue;
  before(async () => {
    const { stdout } = await run('bash', [S3, 'up']);
    s3env = Object.fromEntries(
      [...stdout.matchAll(/^export (\w+)=(.*)$/gm)].map((m) => [m[1] as string, m[2] as string]),
    );
    harness = await createRunnerHarness('s3-store', {
      ...s3env,
      ARTEFACT_STORE: 's3',
      S3_PREFIX: `test-${Date.now()}/`,
      S3_PART_MB: '5',
      S3_PUBLIC_URL: 'https://artefacts.example.test/ci',
      BOARD_PORT: '0',
      BOARD_ALLOW_NO_AUTH: 'true',
    });
    client = new S3Client({
      region: 'us-east-1',
      endpoint: s3env.S3_ENDPOINT,
      forcePathStyle: true,
      credentials: {
        accessKeyId: s3env.AWS_ACCESS_KEY_ID as string,
        secretAccessKey: s3env.AWS_SECRET_ACCESS_KEY as string,
      },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    await harness.startBridge();
    await harness.startWorker();
    board = harness.track(await startBoard(harness.space.config, harness.logger));
    redis = connectRedis(harness.space.config.redis.url);
    queue = new Queue(harness.space.config.queueName, { connection: redis });
  });
  after(async () => {
    await queue?.close();
    redis?.disconnect();
    client?.destroy();
    await harness?.close();
    await run('bash', [S3, 'down']);
  });

  const object = async (url: string) => {
    const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(url);
    assert.ok(match, `an s3:// URL: ${url}`);
    const [, Bucket, Key] = match;
    const got = await client.send(new GetObjectCommand({ Bucket, Key }));
    const head = await client.send(new HeadObjectCommand({ Bucket, Key }));
    const body = got.Body as { transformToByteArray(): Promise<Uint8Array> };
    return { bytes: Buffer.from(await body.transformToByteArray()), bytesHead: head.ContentLength };
  };
  const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

  test('the artefact is in the bucket whole (multipart, parts checked), the report names it, the board serves it', async () => {
    const repo = await harness.newRepo('s3');
    const sha = await repo.commit({ ...cleanProject(), 'tests/test_keep.py': KEEPER }, 'keeps 12 MiB');
    repo.push('main');
    await harness.announce({ sha, repositoryUrl: repo.url });
    const report = await harness.reports.waitFor(sha);
    assert.equal(report.status, 'PASSED', report.error);
    const prefix = `s3://${s3env.S3_BUCKET}/${harness.space.config.artefactStore.kind === 's3' ? harness.space.config.artefactStore.prefix : ''}${sha}.`;
    assert.ok(report.artefactUrl.startsWith(prefix), report.artefactUrl);
    const key = report.artefactUrl.slice(`s3://${s3env.S3_BUCKET}/`.length);
    assert.equal(report.artefactLink, `https://artefacts.example.test/ci/${key}`);
    const stored = await object(report.artefactUrl);
    assert.ok(stored.bytes.length > 12 * 1024 * 1024, `${stored.bytes.length} bytes`);
    assert.equal(stored.bytesHead, stored.bytes.length);
    assert.equal(sha256(stored.bytes), report.artefactSha256);
    // Uploaded in 5 MiB parts, as the job log says.
    const { logs } = await queue.getJobLogs(buildJobId(sha));
    const line = `artefact stored at ${report.artefactUrl} (${stored.bytes.length} bytes, 3 parts of 5 MiB, each part's MD5 checked by the server)`;
    assert.ok(logs.includes(line), logs.join('\n'));
    assert.deepEqual(await readdir(harness.space.config.artefactDir), [], 'nothing left on the worker');

    // The credentials reached neither the build (its environment, kept in the artefact) nor the report.
    const secret = s3env.AWS_SECRET_ACCESS_KEY as string;
    const tar = gunzipSync(stored.bytes);
    assert.ok(tar.includes(Buffer.from('"CI_RUNNER_KEEP"')), 'the build kept its environment');
    assert.ok(
      !tar.includes(Buffer.from(secret)) && !tar.includes(Buffer.from(s3env.AWS_ACCESS_KEY_ID as string)),
    );
    assert.ok(!encodeBuildReport(report).includes(Buffer.from(secret)));

    const response = await fetch(`${board.url}/artefacts/${sha}.tar.gz`);
    assert.equal(response.status, 200);
    assert.equal(sha256(Buffer.from(await response.arrayBuffer())), report.artefactSha256);
    assert.equal((await fetch(`${board.url}/artefacts/${'0'.repeat(40)}.tar.gz`)).status, 404);

    // Retention: what was stored before the cut-off goes (a cut-off in the future takes this one).
    const { config } = harness.space;
    const store = createArtefactStore(config.artefactStore, config.artefactDir);
    assert.equal(await store.expire(new Date(Date.now() - 86_400_000)), 0);
    assert.ok((await store.expire(new Date(Date.now() + 60_000))) >= 1);
    await assert.rejects(object(report.artefactUrl));
    assert.equal((await fetch(`${board.url}/artefacts/${sha}.tar.gz`)).status, 404);
  });
});
