import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { SYSTEM_PATH } from '../host/systemPath.js';
import { buildEnv } from './buildEnvConfig.js';
import { boolean, choice, type Env, integer, optional, text } from './configValues.js';
import { type EgressConfig, egressConfig } from './egressConfig.js';
import { ConfigError } from './errors.js';
import { type KafkaTarget, kafkaTarget } from './kafkaConfig.js';
import { type PlacementConfig, placement, workerHostId } from './placementConfig.js';
import { secretValue } from './secretValue.js';
import {
  type ArtefactStoreConfig,
  artefactStore,
  queueName,
  type RedisTarget,
  redisCluster,
  redisSentinels,
  redisUrl,
} from './storeConfig.js';
import { type SupersedeConfig, supersede } from './supersedeConfig.js';

export type { PlacementConfig } from './placementConfig.js';
export type { ArtefactStoreConfig, RedisTarget, S3StoreConfig } from './storeConfig.js';
export type { CancelSupersededMode, SupersedeConfig } from './supersedeConfig.js';

/** Each stage's time limit (<STAGE>_TIMEOUT_SEC); a repository may lower all but checkout's and settings'. */
export interface StageLimits {
  checkoutMs: number;
  settingsMs: number;
  installMs: number;
  lintMs: number;
  testMs: number;
  coverageMs: number;
  artefactMs: number;
}

/** What one build may use at most, all its processes together where the kernel allows (see the sandbox). */
export interface BuildResources {
  memoryMb: number;
  /** Everything a build writes on disk (its own filesystem, where the worker is root). */
  diskMb: number;
  maxProcesses: number;
  fileSizeMb: number;
  openFiles: number;
  cpuSec: number;
}

/** What one checkout may write at most (CHECKOUT_MAX_FILES, CHECKOUT_MAX_MB, CHECKOUT_MAX_FILE_MB). */
export interface CheckoutCaps {
  maxFiles: number;
  maxBytes: number;
  maxFileBytes: number;
}

export interface SandboxConfig {
  /** false only when an operator set SANDBOX=off. */
  enabled: boolean;
  /** Builds started by root run as uid/gid uidBase + a random offset below 65,536. */
  uidBase: number;
  resources: BuildResources;
  /** What builds that resolve or install may reach (BUILD_EGRESS, BUILD_EGRESS_ALLOW, BUILD_EGRESS_DNS). */
  egress: EgressConfig;
}

export interface GitCredentials {
  username: string;
  password: string;
  hosts: string[];
}

export interface BoardConfig {
  host: string;
  port: number;
  username: string | undefined;
  password: string | undefined;
  allowNoAuth: boolean;
}

export interface Config {
  /** KAFKA_BROKERS and how to authenticate there (KAFKA_SASL_*, KAFKA_TLS*). */
  kafka: Readonly<KafkaTarget>;
  /** Where Redis is: REDIS_URL ('' when Redis Sentinel or Cluster alone says where), sentinels, cluster nodes. */
  redis: Readonly<RedisTarget>;
  topicCommitResults: string;
  topicBuildReports: string;
  topicDeadLetter: string;
  kafkaGroupId: string;
  queueName: string;
  remoteRepo: string | undefined;
  gitCredentials: GitCredentials | undefined;
  artefactDir: string;
  /** Where finished artefacts are kept (ARTEFACT_STORE): the file in artefactDir, or S3. */
  artefactStore: Readonly<ArtefactStoreConfig>;
  /** Artefacts older than this are removed by the workers (ARTEFACT_RETENTION_DAYS; 0 keeps them). */
  artefactRetentionDays: number;
  cacheDir: string;
  workDir: string;
  artefactMaxBytes: number;
  /** The most entries a report's failed_tests and lint_errors keep (REPORT_MAX_ENTRIES); the rest are counted. */
  reportMaxEntries: number;
  /** What one build attempt may write to its job's log in Redis (JOB_LOG_MAX_KB); the artefact keeps everything. */
  jobLogMaxBytes: number;
  /** What one checkout may write: files and directories, bytes, one file's bytes (a git bomb fails its build). */
  checkoutCaps: CheckoutCaps;
  workerConcurrency: number;
  /** Names the host a worker's caches live on (WORKER_HOST_ID, default the host name): in reports and job logs. */
  workerHostId: string;
  /** PLACEMENT and PLACEMENT_WAIT_MS: whether builds prefer the hosts whose caches hold their repository. */
  placement: Readonly<PlacementConfig>;
  /** How long SIGTERM lets running builds finish before handing them back to the queue. */
  drainGraceMs: number;
  /** A job's lock lifetime: a worker silent for this long (killed, stopped) has its job taken over. */
  lockMs: number;
  metricsHost: string;
  workerMetricsPort: number;
  bridgeMetricsPort: number;
  board: Readonly<BoardConfig>;
  /** The bridge pauses consuming while more jobs than this wait. */
  maxWaitingJobs: number;
  buildAttempts: number;
  /** CANCEL_SUPERSEDED and CANCEL_SUPERSEDED_BRANCHES. */
  supersede: Readonly<SupersedeConfig>;
  pytestMark: string;
  /** Re-runs of a build's failed tests (FLAKY_RERUNS): a test that passes on one is flaky, not failed. */
  flakyReruns: number;
  /** With select = "affected", every this-many-th build of a lineage runs every test (SELECT_FULL_EVERY). */
  selectFullEvery: number;
  /** Which tests a repository that does not set `select` runs (SELECT_DEFAULT). */
  selectDefault: 'all' | 'affected';
  /** Whether a repository's builds reuse the bytecode its earlier builds compiled from the same sources (BYTECODE_CACHE). */
  bytecodeCache: boolean;
  pythonBin: string;
  limits: StageLimits;
  sandbox: Readonly<SandboxConfig>;
  /** Host variables builds inherit (package index, TLS trust, proxies); nothing else of the runner's reaches them. */
  buildEnv: Readonly<Record<string, string>>;
  /** The PATH the runner finds git and Python on (the host's). */
  hostPath: string;
  logLevel: string;
  /** Human-readable logs; undefined means "when writing to a terminal". */
  logPretty: boolean | undefined;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function remoteRepo(env: Env): string | undefined {
  const raw = optional(env, 'REMOTE_REPO');
  if (raw === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`REMOTE_REPO must be an http(s) URL, got "${raw}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`REMOTE_REPO must be an http(s) URL, got "${raw}"`);
  }
  if (url.username || url.password) {
    throw new ConfigError(
      'REMOTE_REPO must not carry credentials; set GIT_HTTP_USERNAME and GIT_HTTP_PASSWORD',
    );
  }
  return raw;
}

function gitCredentials(env: Env): GitCredentials | undefined {
  const username = optional(env, 'GIT_HTTP_USERNAME');
  const password = secretValue(env, 'GIT_HTTP_PASSWORD');
  if (!username && !password) return undefined;
  if (!password) throw new ConfigError('GIT_HTTP_PASSWORD must be set when GIT_HTTP_USERNAME is');
  const hosts = (optional(env, 'GIT_HTTP_HOSTS') ?? '')
    .split(',')
    .map((host) => host.trim())
    .filter(Boolean);
  return Object.freeze({ username: username ?? 'x-access-token', password, hosts });
}

function sandboxSwitch(env: Env): boolean {
  const raw = optional(env, 'SANDBOX')?.toLowerCase();
  if (raw === undefined || raw === 'on') return true;
  if (raw === 'off') return false;
  throw new ConfigError(`SANDBOX must be on or off, got "${raw}"`);
}

function topic(env: Env, name: string, fallback: string): string {
  const value = text(env, name, fallback);
  if (!/^[A-Za-z0-9._-]{1,249}$/.test(value)) {
    throw new ConfigError(`${name} must be a Kafka topic name (letters, digits, . _ -), got "${value}"`);
  }
  return value;
}

function pytestMark(env: Env): string {
  const value = text(env, 'PYTEST_MARK', 'fast');
  if (!/^[A-Za-z0-9_ ()]+$/.test(value) || value.startsWith('-')) {
    throw new ConfigError(`PYTEST_MARK must be a pytest mark expression, got "${value}"`);
  }
  return value;
}

function logLevel(env: Env): string {
  const value = text(env, 'LOG_LEVEL', 'info');
  if (!LOG_LEVELS.includes(value)) throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);
  return value;
}

/** The services a process cannot run without (the local `ci-runner build` needs neither). */
export type RequiredService = 'kafka' | 'redis';

// Reads the environment once at start-up into one frozen object; every bad value names its variable.
export function loadConfig(
  env: Env,
  cwd: string = process.cwd(),
  requires: RequiredService[] = ['kafka', 'redis'],
): Readonly<Config> {
  const seconds = (name: string, fallback: number) => integer(env, name, fallback, 1, 86_400) * 1000;
  // With sentinels, REDIS_URL is optional: it gives only the primary's credentials, database and TLS.
  const elsewhere = optional(env, 'REDIS_SENTINELS') ?? optional(env, 'REDIS_CLUSTER_NODES');
  const redisAt = redisUrl(env, requires.includes('redis') && !elsewhere);
  const queue = queueName(env);
  const config: Config = {
    kafka: Object.freeze(kafkaTarget(env, requires.includes('kafka'))),
    redis: Object.freeze({ url: redisAt, ...redisSentinels(env), ...redisCluster(env, queue) }),
    topicCommitResults: topic(env, 'TOPIC_COMMIT_RESULTS', 'commit-results'),
    topicBuildReports: topic(env, 'TOPIC_BUILD_REPORTS', 'build-reports'),
    topicDeadLetter: topic(env, 'TOPIC_DEAD_LETTER', 'commit-results.dlq'),
    kafkaGroupId: text(env, 'KAFKA_GROUP_ID', 'ci-runner-bridge'),
    queueName: queue,
    remoteRepo: remoteRepo(env),
    gitCredentials: gitCredentials(env),
    artefactDir: resolve(cwd, text(env, 'ARTEFACT_DIR', './artefacts')),
    artefactStore: Object.freeze(artefactStore(env)),
    artefactRetentionDays: integer(env, 'ARTEFACT_RETENTION_DAYS', 0, 0, 36_500),
    cacheDir: resolve(cwd, text(env, 'CACHE_DIR', './.cache')),
    workDir: resolve(cwd, text(env, 'WORK_DIR', join(tmpdir(), 'ci-runner-builds'))),
    artefactMaxBytes: integer(env, 'ARTEFACT_MAX_MB', 512, 1, 1_000_000) * 1024 * 1024,
    reportMaxEntries: integer(env, 'REPORT_MAX_ENTRIES', 1000, 1, 1_000_000),
    jobLogMaxBytes: integer(env, 'JOB_LOG_MAX_KB', 64, 4, 1_048_576) * 1024,
    checkoutCaps: Object.freeze({
      maxFiles: integer(env, 'CHECKOUT_MAX_FILES', 100_000, 10, 100_000_000),
      maxBytes: integer(env, 'CHECKOUT_MAX_MB', 2048, 1, 1_048_576) * 1024 * 1024,
      maxFileBytes: integer(env, 'CHECKOUT_MAX_FILE_MB', 100, 1, 4096) * 1024 * 1024,
    }),
    workerConcurrency: integer(env, 'WORKER_CONCURRENCY', 2, 1, 256),
    workerHostId: workerHostId(env, hostname()),
    placement: Object.freeze(placement(env)),
    drainGraceMs: integer(env, 'DRAIN_GRACE_SEC', 60, 0, 86_400) * 1000,
    lockMs: integer(env, 'WORKER_LOCK_SEC', 30, 2, 3_600) * 1000,
    maxWaitingJobs: integer(env, 'MAX_WAITING_JOBS', 1000, 1, 10_000_000),
    board: Object.freeze({
      host: text(env, 'BOARD_HOST', '127.0.0.1'),
      port: integer(env, 'BOARD_PORT', 9800, 0, 65_535),
      username: optional(env, 'BOARD_USERNAME'),
      password: secretValue(env, 'BOARD_PASSWORD'),
      allowNoAuth: boolean(env, 'BOARD_ALLOW_NO_AUTH', false),
    }),
    metricsHost: text(env, 'METRICS_HOST', '0.0.0.0'),
    workerMetricsPort: integer(env, 'WORKER_METRICS_PORT', 9700, 0, 65_535),
    bridgeMetricsPort: integer(env, 'BRIDGE_METRICS_PORT', 9701, 0, 65_535),
    buildAttempts: integer(env, 'BUILD_ATTEMPTS', 3, 1, 100),
    supersede: Object.freeze(supersede(env)),
    pytestMark: pytestMark(env),
    flakyReruns: integer(env, 'FLAKY_RERUNS', 2, 0, 10),
    selectFullEvery: integer(env, 'SELECT_FULL_EVERY', 20, 1, 10_000),
    selectDefault: choice(env, 'SELECT_DEFAULT', ['all', 'affected'] as const, 'all'),
    bytecodeCache: choice(env, 'BYTECODE_CACHE', ['on', 'off'] as const, 'on') === 'on',
    pythonBin: text(env, 'PYTHON', 'python3'),
    limits: Object.freeze({
      checkoutMs: seconds('CHECKOUT_TIMEOUT_SEC', 120),
      settingsMs: seconds('SETTINGS_TIMEOUT_SEC', 30),
      installMs: seconds('INSTALL_TIMEOUT_SEC', 900),
      lintMs: seconds('LINT_TIMEOUT_SEC', 300),
      testMs: seconds('TEST_TIMEOUT_SEC', 900),
      coverageMs: seconds('COVERAGE_TIMEOUT_SEC', 60),
      artefactMs: seconds('ARTEFACT_TIMEOUT_SEC', 300),
    }),
    sandbox: Object.freeze({
      enabled: sandboxSwitch(env),
      uidBase: integer(env, 'SANDBOX_UID_BASE', 800_000, 1_000, 4_294_000_000),
      egress: Object.freeze(egressConfig(env)),
      resources: Object.freeze({
        memoryMb: integer(env, 'BUILD_MEMORY_MB', 2048, 64, 1_048_576),
        diskMb: integer(env, 'BUILD_DISK_MB', 4096, 64, 16_777_216),
        maxProcesses: integer(env, 'BUILD_MAX_PROCESSES', 512, 16, 4_194_304),
        fileSizeMb: integer(env, 'BUILD_FILE_SIZE_MB', 1024, 1, 1_048_576),
        openFiles: integer(env, 'BUILD_OPEN_FILES', 1024, 64, 1_048_576),
        cpuSec: integer(env, 'BUILD_CPU_SEC', 1800, 1, 86_400),
      }),
    }),
    buildEnv: buildEnv(env),
    hostPath: text(env, 'PATH', SYSTEM_PATH),
    logLevel: logLevel(env),
    logPretty: optional(env, 'LOG_PRETTY') === undefined ? undefined : boolean(env, 'LOG_PRETTY', false),
  };
  return Object.freeze(config);
}
