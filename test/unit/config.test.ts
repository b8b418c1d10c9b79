import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compileBranchFilter } from '../../src/ops/branchFilter.js';
import { loadConfig } from '../../src/ops/config.js';
import { ConfigError } from '../../src/ops/errors.js';

const minimal = { KAFKA_BROKERS: '127.0.0.1:19092', REDIS_URL: 'redis://127.0.0.1:16379' };

function rejects(env: Record<string, string>, variable: string, pattern?: RegExp): void {
  assert.throws(
    () => loadConfig({ ...minimal, ...env }),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError, 'a ConfigError');
      assert.ok(error.message.startsWith(variable), `"${error.message}" names ${variable}`);
      if (pattern) assert.match(error.message, pattern);
      return true;
    },
  );
}

describe('loadConfig', () => {
  test('applies the documented defaults and freezes the result', () => {
    const config = loadConfig(minimal, '/srv/ci');
    assert.deepEqual(config.kafka.brokers, ['127.0.0.1:19092']);
    assert.equal(config.topicCommitResults, 'commit-results');
    assert.equal(config.topicBuildReports, 'build-reports');
    assert.equal(config.topicDeadLetter, 'commit-results.dlq');
    assert.equal(config.artefactDir, '/srv/ci/artefacts');
    assert.equal(config.pytestMark, 'fast');
    assert.equal(config.remoteRepo, undefined);
    assert.equal(config.workerConcurrency, 2);
    assert.deepEqual(config.supersede, { mode: 'waiting', branches: '!main,!master' });
    assert.deepEqual(config.placement, { mode: 'cache', waitMs: 1500 });
    assert.equal(config.queueName, 'builds');
    assert.ok(Object.isFrozen(config));
    assert.ok(Object.isFrozen(config.limits));
  });

  test("builds inherit only the pass-through variables, never the runner's own", () => {
    const config = loadConfig({
      ...minimal,
      SSL_CERT_FILE: '/etc/ssl/ca.pem',
      HTTPS_PROXY: 'http://proxy:3128',
      MY_INDEX_TOKEN: 'tok',
      BUILD_ENV_PASSTHROUGH: 'MY_INDEX_TOKEN',
      GIT_HTTP_USERNAME: 'agent',
      GIT_HTTP_PASSWORD: 'secret',
    });
    assert.deepEqual(config.buildEnv, {
      SSL_CERT_FILE: '/etc/ssl/ca.pem',
      HTTPS_PROXY: 'http://proxy:3128',
      MY_INDEX_TOKEN: 'tok',
    });
    assert.deepEqual(config.gitCredentials, { username: 'agent', password: 'secret', hosts: [] });
  });

  test('reads every documented variable', () => {
    const config = loadConfig(
      {
        KAFKA_BROKERS: 'k1:9092, k2:9093',
        REDIS_URL: 'rediss://user:pw@redis.internal:6380/2',
        TOPIC_COMMIT_RESULTS: 'cr',
        TOPIC_BUILD_REPORTS: 'br',
        REMOTE_REPO: 'https://git.example.com/org/repo.git',
        ARTEFACT_DIR: '/data/artefacts',
        CACHE_DIR: 'cache',
        WORKER_CONCURRENCY: '8',
        PYTEST_MARK: 'fast and not network',
        TEST_TIMEOUT_SEC: '30',
      },
      '/srv/ci',
    );
    assert.deepEqual(config.kafka.brokers, ['k1:9092', 'k2:9093']);
    assert.equal(config.topicCommitResults, 'cr');
    assert.equal(config.topicBuildReports, 'br');
    assert.equal(config.remoteRepo, 'https://git.example.com/org/repo.git');
    assert.equal(config.artefactDir, '/data/artefacts');
    assert.equal(config.cacheDir, '/srv/ci/cache');
    assert.equal(config.workerConcurrency, 8);
    assert.equal(config.pytestMark, 'fast and not network');
    assert.equal(config.limits.testMs, 30_000);
  });

  test('a missing or malformed value stops start-up naming the variable', () => {
    assert.throws(
      () => loadConfig({ REDIS_URL: minimal.REDIS_URL }),
      /^ConfigError: KAFKA_BROKERS is required/,
    );
    assert.throws(() => loadConfig({ KAFKA_BROKERS: minimal.KAFKA_BROKERS }), /REDIS_URL is required/);
    rejects({ KAFKA_BROKERS: 'localhost' }, 'KAFKA_BROKERS', /host:port/);
    rejects({ REDIS_URL: 'http://127.0.0.1:6379' }, 'REDIS_URL', /redis:\/\//);
    rejects({ REDIS_URL: 'not a url' }, 'REDIS_URL');
    rejects({ WORKER_CONCURRENCY: 'two' }, 'WORKER_CONCURRENCY', /whole number/);
    rejects({ WORKER_CONCURRENCY: '0' }, 'WORKER_CONCURRENCY', /between 1 and 256/);
    rejects({ REMOTE_REPO: 'git@github.com:org/repo.git' }, 'REMOTE_REPO', /http\(s\)/);
    rejects({ REMOTE_REPO: 'file:///etc' }, 'REMOTE_REPO');
    rejects({ REMOTE_REPO: 'https://u:tok@git.example.com/r.git' }, 'REMOTE_REPO', /GIT_HTTP_USERNAME/);
    rejects({ GIT_HTTP_USERNAME: 'agent' }, 'GIT_HTTP_PASSWORD');
    rejects({ BUILD_ENV_PASSTHROUGH: 'OK,not valid' }, 'BUILD_ENV_PASSTHROUGH');
    rejects({ TOPIC_BUILD_REPORTS: 'bad topic' }, 'TOPIC_BUILD_REPORTS');
    rejects({ PYTEST_MARK: '--co' }, 'PYTEST_MARK');
    rejects({ LOG_LEVEL: 'loud' }, 'LOG_LEVEL');
    rejects({ LOG_PRETTY: 'maybe' }, 'LOG_PRETTY');
    rejects({ REDIS_SENTINELS: '127.0.0.1' }, 'REDIS_SENTINELS', /host:port/);
    rejects({ ARTEFACT_STORE: 'ftp' }, 'ARTEFACT_STORE', /file or s3/);
    rejects({ ARTEFACT_STORE: 's3' }, 'S3_BUCKET', /required/);
    rejects({ ARTEFACT_STORE: 's3', S3_BUCKET: 'Bad_Bucket' }, 'S3_BUCKET', /bucket name/);
    rejects(
      { ARTEFACT_STORE: 's3', S3_BUCKET: 'b-1', S3_ENDPOINT: 'http://k:s@h' },
      'S3_ENDPOINT',
      /without/,
    );
    rejects({ ARTEFACT_STORE: 's3', S3_BUCKET: 'b-1', S3_PART_MB: '4' }, 'S3_PART_MB', /between 5/);
    rejects({ ARTEFACT_STORE: 's3', S3_BUCKET: 'b-1', AWS_ACCESS_KEY_ID: 'k' }, 'AWS_ACCESS_KEY_ID');
    rejects({ BUILD_ENV_PASSTHROUGH: 'AWS_SECRET_ACCESS_KEY' }, 'BUILD_ENV_PASSTHROUGH', /may not pass/);
    rejects({ PLACEMENT: 'random' }, 'PLACEMENT', /cache or off/);
    rejects({ PLACEMENT_WAIT_MS: '-1' }, 'PLACEMENT_WAIT_MS');
    rejects({ WORKER_HOST_ID: 'host:1' }, 'WORKER_HOST_ID', /letters, digits/);
    rejects({ QUEUE_NAME: 'a:b' }, 'QUEUE_NAME', /hash tag/);
    rejects({ QUEUE_NAME: '{a}{b}' }, 'QUEUE_NAME', /hash tag/);
    rejects({ REDIS_CLUSTER_NODES: '127.0.0.1:7000' }, 'QUEUE_NAME', /\{builds\}/);
    rejects({ REDIS_CLUSTER_NODES: 'h', QUEUE_NAME: '{b}' }, 'REDIS_CLUSTER_NODES', /host:port/);
    rejects(
      { REDIS_CLUSTER_NODES: 'h:1', REDIS_SENTINELS: 'h:2', QUEUE_NAME: '{b}' },
      'REDIS_CLUSTER_NODES',
      /cannot both/,
    );
    rejects({ CANCEL_SUPERSEDED: 'always' }, 'CANCEL_SUPERSEDED', /off, waiting or running/);
    rejects({ CANCEL_SUPERSEDED_BRANCHES: 'feature/*,,main' }, 'CANCEL_SUPERSEDED_BRANCHES', /empty pattern/);
    rejects({ CANCEL_SUPERSEDED_BRANCHES: 'feature/*,!' }, 'CANCEL_SUPERSEDED_BRANCHES', /empty pattern/);
  });
});

describe('artefact store', () => {
  test('file by default; s3 with its bucket, defaults and the configured credentials', () => {
    assert.deepEqual(loadConfig(minimal).artefactStore, { kind: 'file' });
    const config = loadConfig({
      ...minimal,
      ARTEFACT_STORE: 'S3',
      S3_BUCKET: 'ci-artefacts',
      S3_ENDPOINT: 'http://127.0.0.1:19300',
      AWS_ACCESS_KEY_ID: 'id',
      AWS_SECRET_ACCESS_KEY: 'secret',
    });
    assert.deepEqual(config.artefactStore, {
      kind: 's3',
      bucket: 'ci-artefacts',
      region: 'us-east-1',
      endpoint: 'http://127.0.0.1:19300',
      prefix: 'artefacts/',
      partBytes: 16 * 1024 * 1024,
      timeoutMs: 60_000,
      credentials: { accessKeyId: 'id', secretAccessKey: 'secret' },
    });
    assert.deepEqual(config.buildEnv.AWS_SECRET_ACCESS_KEY, undefined);
  });
});

describe('Redis Sentinel', () => {
  test('REDIS_SENTINELS stands for REDIS_URL, which then gives only credentials and database', () => {
    const config = loadConfig({
      KAFKA_BROKERS: minimal.KAFKA_BROKERS,
      REDIS_SENTINELS: '10.0.0.1:26379, [::1]:26380',
      REDIS_SENTINEL_NAME: 'builds',
    });
    assert.deepEqual(config.redis, {
      url: '',
      sentinels: [
        { host: '10.0.0.1', port: 26379 },
        { host: '::1', port: 26380 },
      ],
      sentinelName: 'builds',
    });
    const withUrl = loadConfig({ ...minimal, REDIS_SENTINELS: 'h:1' });
    assert.equal(withUrl.redis.url, minimal.REDIS_URL);
    assert.equal(withUrl.redis.sentinelName, 'ci-runner');
    assert.deepEqual(loadConfig(minimal).redis, { url: minimal.REDIS_URL });
  });
});

describe('Redis Cluster', () => {
  test('REDIS_CLUSTER_NODES stands for REDIS_URL, with a queue name that carries a hash tag', () => {
    const config = loadConfig({
      KAFKA_BROKERS: minimal.KAFKA_BROKERS,
      REDIS_CLUSTER_NODES: '10.0.0.1:7000,10.0.0.2:7001',
      QUEUE_NAME: '{builds}',
    });
    assert.equal(config.queueName, '{builds}');
    assert.deepEqual(config.redis, {
      url: '',
      clusterNodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
      ],
    });
  });
});

describe('compileBranchFilter (CANCEL_SUPERSEDED_BRANCHES)', () => {
  const matches = (list: string, branches: string[]) => {
    const filter = compileBranchFilter(list, 'X');
    return branches.filter((branch) => filter(branch));
  };
  const branches = ['main', 'master', 'feature/a', 'feature/keep-1', 'fix/z', 'release/1.2', 'feature.x'];

  test('a negation-only list means every branch but those', () => {
    assert.deepEqual(matches('!main,!master', branches), branches.slice(2));
  });

  test('* matches across slashes, ? one character, and everything else literally', () => {
    assert.deepEqual(matches('feature/*,!feature/keep-*', branches), ['feature/a']);
    assert.deepEqual(matches('*', branches), branches);
    assert.deepEqual(matches('release/?.?', branches), ['release/1.2']);
    assert.deepEqual(matches('feature.x', branches), ['feature.x']);
    assert.deepEqual(matches('feature.*', branches), ['feature.x']);
    assert.deepEqual(matches(' fix/* , main ', branches), ['main', 'fix/z']);
  });
});
