import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { cleanProject } from '../support/pythonProject.js';
import { createRunnerHarness, type RunnerHarness } from '../support/runnerHarness.js';

// An S3 endpoint that accepts connections and never answers (a black-holed load balancer): on loopback, made here.
describe('an S3 server that accepts and never answers', () => {
  let silent: Server;
  const sockets = new Set<Socket>();
  let harness: RunnerHarness;
  before(async () => {
    silent = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as { port: number };
    harness = await createRunnerHarness('s3-silent', {
      ARTEFACT_STORE: 's3',
      S3_BUCKET: 'ci-artefacts',
      S3_ENDPOINT: `http://127.0.0.1:${port}`,
      AWS_ACCESS_KEY_ID: 'silent',
      AWS_SECRET_ACCESS_KEY: 'silent-secret',
      S3_TIMEOUT_SEC: '2',
      BUILD_ATTEMPTS: '2',
    });
  });
  after(async () => {
    await harness?.close();
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent?.close(resolve));
  });

  test('the build ends ERRORED in bounded time, naming the store, and the worker drains', async (t) => {
    await harness.startBridge();
    const worker = await harness.startWorker();
    const repo = await harness.newRepo('s3-silent');
    const sha = await repo.commit(cleanProject(), 'clean');
    repo.push('main');
    const started = Date.now();
    await harness.announce({ sha, repositoryUrl: repo.url });
    const report = await harness.reports.waitFor(sha, 240_000);
    assert.equal(report.status, 'ERRORED');
    assert.match(report.error, /storing the artefact in s3:\/\/ci-artefacts failed/);
    assert.equal(report.attempt, 2);
    const seconds = (Date.now() - started) / 1000;
    // Drained: close() returns (a request that never times out would hold it, and this test, forever).
    const closing = Date.now();
    await worker.close();
    t.diagnostic(
      `ERRORED after ${seconds.toFixed(0)} s; drained in ${((Date.now() - closing) / 1000).toFixed(1)} s`,
    );
  });
});
