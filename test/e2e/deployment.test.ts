import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const SECRETS = { BOARD_USERNAME: 'oncall', BOARD_PASSWORD: 'secret', S3_SECRET_ACCESS_KEY: 's3-secret' };

describe('deployment files', () => {
  test('docker-compose.yml is valid for a real compose implementation, and every command exists in the build', async () => {
    const env = { ...process.env, ...SECRETS };
    const { stdout } = await run('docker-compose', ['-f', 'docker-compose.yml', 'config'], { env });
    const services = [
      'kafka',
      'redis',
      's3',
      's3-bucket',
      'bridge',
      'worker-1',
      'worker-2',
      'worker-3',
      'board',
    ];
    for (const service of services) {
      assert.match(stdout, new RegExp(`\\n  ${service}:\\n`), `service ${service}`);
    }
    assert.match(stdout, /appendfsync[\s\S]*always[\s\S]*noeviction/);
    // Three worker hosts, each named and with a build cache of its own (what cache-aware placement works with).
    assert.deepEqual(stdout.match(/WORKER_HOST_ID: worker-\d/g), [
      'WORKER_HOST_ID: worker-1',
      'WORKER_HOST_ID: worker-2',
      'WORKER_HOST_ID: worker-3',
    ]);
    assert.deepEqual(stdout.match(/- cache-\d:\/data\/cache/g), [
      '- cache-1:/data/cache',
      '- cache-2:/data/cache',
      '- cache-3:/data/cache',
    ]);
    // Every worker and the board share artefacts through the S3 server, whose secret is given, never a default.
    assert.match(stdout, /ARTEFACT_STORE: s3[\s\S]*S3_ENDPOINT: http:\/\/s3:80/);
    assert.doesNotMatch(stdout, /\n {6}- artefacts:/);
    // The worker's sandbox needs namespaces a default container profile refuses; the worker keeps no capabilities.
    assert.match(stdout, /seccomp=unconfined[\s\S]*systempaths=unconfined/);
    assert.match(stdout, /cap_drop:\n\s+- ALL/);
    const entries = [...new Set(stdout.match(/dist\/src\/[\w/]+\.js/g) ?? [])].sort();
    assert.deepEqual(entries, [
      'dist/src/board/main.js',
      'dist/src/bridge/main.js',
      'dist/src/worker/main.js',
    ]);

    const out = await mkdtemp(join(tmpdir(), 'ci-runner-dist-'));
    try {
      await run('npx', ['tsc', '-p', 'tsconfig.build.json', '--outDir', out]);
      for (const entry of entries) assert.ok(existsSync(join(out, entry.replace(/^dist\//, ''))), entry);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });

  test('without board credentials or the S3 secret compose refuses to render the deployment', async () => {
    const env = { ...process.env, ...SECRETS, BOARD_USERNAME: '', BOARD_PASSWORD: '' };
    await assert.rejects(
      run('docker-compose', ['-f', 'docker-compose.yml', 'config', '-q'], { env }),
      /BOARD_USERNAME/,
    );
    const noS3Secret = { ...process.env, ...SECRETS, S3_SECRET_ACCESS_KEY: '' };
    await assert.rejects(
      run('docker-compose', ['-f', 'docker-compose.yml', 'config', '-q'], { env: noS3Secret }),
      /S3_SECRET_ACCESS_KEY/,
    );
  });

  test('every file the Dockerfile copies exists, and it runs as a non-root user', async () => {
    const dockerfile = await readFile('Dockerfile', 'utf8');
    const sources = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) =>
      (m[1] ?? '').split(' '),
    );
    assert.ok(sources.length >= 5);
    for (const source of sources) assert.ok(existsSync(source), source);
    assert.match(dockerfile, /^USER runner$/m);
    assert.match(dockerfile, /bubblewrap slirp4netns/);
    assert.match(dockerfile, /^FROM node:20-bookworm-slim AS build$/m);
  });
});
