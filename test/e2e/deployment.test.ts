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
const SECRETS = { BOARD_USERNAME: 'oncall', S3_SECRET_ACCESS_KEY: 's3-secret' };

describe('deployment files', () => {
  test('docker-compose.yml is valid for a real compose implementation, and every command exists in the build', async () => {
    const env = { ...process.env, ...SECRETS };
    const { stdout } = await run('docker-compose', ['-f', 'docker-compose.yml', 'config'], { env });
    const services = [
      'kafka',
      'kafka-acls',
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

  test('no service without credentials: Kafka takes SASL/SCRAM with ACLs, Redis has no default user', async () => {
    const env = { ...process.env, ...SECRETS };
    const { stdout } = await run('docker-compose', ['-f', 'docker-compose.yml', 'config'], { env });
    const section = stdout.slice(
      stdout.indexOf('\nservices:\n'),
      stdout.search(/\n(volumes|secrets|networks):\n/),
    );
    const blocks = new Map(
      section
        .split(/\n {2}(?=[a-z0-9-]+:\n)/)
        .slice(1)
        .map((block) => [block.slice(0, block.indexOf(':')), `${block}\n`] as const),
    );
    assert.ok(blocks.size >= 10, [...blocks.keys()].join(', '));
    // What proves who a service is to the others, or what it demands of its clients.
    const credentials =
      /PASSWORD_FILE: \/run\/secrets\/|--aclfile|kafka-secure\.sh|S3PROXY_CREDENTIAL|AWS_SECRET_ACCESS_KEY/;
    for (const [name, block] of blocks) assert.match(block, credentials, `${name} has credentials`);
    // Each runner process its own role, from a secret of its own; the board talks to Redis only.
    const roles = { bridge: 'bridge', 'worker-1': 'worker', 'worker-2': 'worker', 'worker-3': 'worker' };
    for (const [name, role] of Object.entries(roles)) {
      const block = blocks.get(name) ?? '';
      for (const line of [
        'KAFKA_SASL_MECHANISM: scram-sha-256',
        `KAFKA_SASL_USERNAME: ${role}`,
        `KAFKA_SASL_PASSWORD_FILE: /run/secrets/kafka-${role}`,
        `REDIS_USERNAME: ${role}`,
        `REDIS_PASSWORD_FILE: /run/secrets/redis-${role}`,
        `- source: kafka-${role}`,
        `- source: redis-${role}`,
      ])
        assert.ok(block.includes(`\n    ${line.startsWith('-') ? '' : '  '}${line}\n`), `${name}: ${line}`);
    }
    const board = blocks.get('board') ?? '';
    for (const line of ['BOARD_PASSWORD_FILE: /run/secrets/board-password', 'REDIS_USERNAME: board'])
      assert.ok(board.includes(line), `board: ${line}`);
    assert.doesNotMatch(
      board,
      /KAFKA_SASL_(USERNAME|PASSWORD)/,
      'the board has no Kafka credentials: it does not use Kafka',
    );
    assert.doesNotMatch(
      stdout,
      /BOARD_PASSWORD: |KAFKA_SASL_PASSWORD: |REDIS_PASSWORD: /,
      'no password inline',
    );
    // No plaintext listener for clients; the authorizer with no access by default; Redis's default user off.
    assert.doesNotMatch(stdout, /PLAINTEXT:PLAINTEXT|PLAINTEXT:\/\//);
    const security = await readFile('scripts/kafka-security.sh', 'utf8');
    assert.match(
      security,
      /authorizer\.class\.name=org\.apache\.kafka\.metadata\.authorizer\.StandardAuthorizer/,
    );
    assert.match(security, /allow\.everyone\.if\.no\.acl\.found=false/);
    assert.match(security, /super\.users=User:admin\n/);
    assert.match(
      await readFile('deploy/kafka-secure.sh', 'utf8'),
      /listeners=SASL_PLAINTEXT:\/\/:9092,CONTROLLER/,
    );
    assert.match(await readFile('scripts/redis-users.sh', 'utf8'), /user default off/);
    // The runners wait for the topics and ACLs.
    assert.match(blocks.get('bridge') ?? '', /kafka-acls:\n\s+condition: service_completed_successfully/);
  });

  test('without board credentials or the S3 secret compose refuses to render the deployment', async () => {
    const env = { ...process.env, ...SECRETS, BOARD_USERNAME: '' };
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
    // Node 24 LTS, what the product ships for (`npm run test:node24` runs the unit tests and a build on it).
    assert.match(dockerfile, /^FROM node:24-bookworm-slim AS build$/m);
    assert.match(dockerfile, /^FROM node:24-bookworm-slim AS runtime$/m);
  });
});
