// The configuration of the runner's backing stores: where Redis is (one address or Sentinel) and where artefacts go.
import { type Env, integer, optional, text } from './configValues.js';
import { ConfigError } from './errors.js';
import { secretValue } from './secretValue.js';

/** ARTEFACT_STORE=s3: artefacts go to a bucket through the AWS SDK (credentials from its standard chain). */
export interface S3StoreConfig {
  kind: 's3';
  bucket: string;
  region: string;
  /** A non-AWS S3 API (S3Proxy, MinIO, SeaweedFS): path-style requests to it. */
  endpoint?: string;
  /** Prepended to every artefact's key. */
  prefix: string;
  /** A base URL the objects are also fetchable at over HTTPS (the report's artefact_link). */
  publicUrl?: string;
  /** Artefacts larger than this go up in parts of this size. */
  partBytes: number;
  /** How long a request's connection may sit idle before it fails (S3_TIMEOUT_SEC): a silent server is a fault. */
  timeoutMs: number;
  /** AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN) as configured; otherwise the AWS SDK's own
   * chain (a shared credentials file, a profile, the instance's role). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
}

export type ArtefactStoreConfig = { kind: 'file' } | S3StoreConfig;

/** Where Redis is: one address (REDIS_URL), or the primary that Redis Sentinel names (REDIS_SENTINELS). */
export interface RedisTarget {
  /** REDIS_URL; with sentinels only its credentials, database and TLS count ('' when unset). */
  url: string;
  sentinels?: Array<{ host: string; port: number }>;
  /** The primary's name the sentinels monitor (REDIS_SENTINEL_NAME). */
  sentinelName?: string;
  sentinelPassword?: string;
  /** REDIS_CLUSTER_NODES: some nodes of a Redis Cluster (the rest are discovered). */
  clusterNodes?: Array<{ host: string; port: number }>;
}

// A comma-separated host:port list (an IPv6 host in brackets).
function hostPorts(name: string, raw: string): Array<{ host: string; port: number }> {
  return raw.split(',').map((entry) => {
    const match = /^([A-Za-z0-9.\-_[\]:]+):(\d{1,5})$/.exec(entry.trim());
    if (!match) throw new ConfigError(`${name} must be a comma-separated list of host:port, got "${entry}"`);
    return { host: (match[1] as string).replace(/^\[(.*)\]$/, '$1'), port: Number(match[2]) };
  });
}

// REDIS_URL, with REDIS_USERNAME and REDIS_PASSWORD (or REDIS_PASSWORD_FILE, a Docker secret) written into it when
// set: one place holds the credentials for one address, Sentinel and Cluster alike.
export function redisUrl(env: Env, required: boolean): string {
  const raw = plainRedisUrl(env, required);
  const password = secretValue(env, 'REDIS_PASSWORD');
  const username = optional(env, 'REDIS_USERNAME');
  if (password === undefined) {
    if (username !== undefined)
      throw new ConfigError('REDIS_USERNAME needs REDIS_PASSWORD or REDIS_PASSWORD_FILE');
    return raw;
  }
  const url = new URL(raw || 'redis://127.0.0.1');
  if (url.password) throw new ConfigError('REDIS_URL already has a password; do not set REDIS_PASSWORD too');
  if (username !== undefined) url.username = encodeURIComponent(username);
  url.password = encodeURIComponent(password);
  return url.toString();
}

function plainRedisUrl(env: Env, required: boolean): string {
  if (!required && !optional(env, 'REDIS_URL')) return '';
  const raw = text(env, 'REDIS_URL');
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`REDIS_URL must be a URL such as redis://127.0.0.1:6379, got "${raw}"`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new ConfigError(`REDIS_URL must start with redis:// or rediss://, got "${raw}"`);
  }
  return raw;
}

// REDIS_SENTINELS (host:port list) and REDIS_SENTINEL_NAME, or nothing: Redis is at REDIS_URL alone.
export function redisSentinels(env: Env): Omit<RedisTarget, 'url'> {
  const raw = optional(env, 'REDIS_SENTINELS');
  if (raw === undefined) return {};
  const sentinels = hostPorts('REDIS_SENTINELS', raw);
  const name = text(env, 'REDIS_SENTINEL_NAME', 'ci-runner');
  const password = secretValue(env, 'REDIS_SENTINEL_PASSWORD');
  return { sentinels, sentinelName: name, ...(password ? { sentinelPassword: password } : {}) };
}

// REDIS_CLUSTER_NODES (host:port list): Redis is a Redis Cluster. Every key of a queue must then hash to one slot (the
// runner's scripts take several keys at once, as BullMQ's do): QUEUE_NAME must carry a hash tag, such as {builds}.
export function redisCluster(env: Env, queueName: string): Pick<RedisTarget, 'clusterNodes'> {
  const raw = optional(env, 'REDIS_CLUSTER_NODES');
  if (raw === undefined) return {};
  if (optional(env, 'REDIS_SENTINELS') !== undefined) {
    throw new ConfigError('REDIS_CLUSTER_NODES and REDIS_SENTINELS cannot both be set');
  }
  if (!/\{[^{}]+\}/.test(queueName)) {
    throw new ConfigError(
      `QUEUE_NAME needs a hash tag with REDIS_CLUSTER_NODES, so that its keys share a slot: such as {${queueName}}`,
    );
  }
  return { clusterNodes: hostPorts('REDIS_CLUSTER_NODES', raw) };
}

// QUEUE_NAME: letters, digits, `.`, `_`, `-`, and one hash tag in braces (for Redis Cluster), such as {builds}.
export function queueName(env: Env): string {
  const value = text(env, 'QUEUE_NAME', 'builds');
  if (!/^[A-Za-z0-9._-]*(\{[A-Za-z0-9._-]+\})?[A-Za-z0-9._-]*$/.test(value) || value.length > 200 || !value) {
    throw new ConfigError(
      `QUEUE_NAME must be letters, digits, . _ - with at most one {hash tag}, got "${value}"`,
    );
  }
  return value;
}

function awsCredentials(env: Env): Pick<S3StoreConfig, 'credentials'> {
  const accessKeyId = optional(env, 'AWS_ACCESS_KEY_ID');
  const secretAccessKey = optional(env, 'AWS_SECRET_ACCESS_KEY');
  if (!accessKeyId && !secretAccessKey) return {};
  if (!accessKeyId || !secretAccessKey) {
    throw new ConfigError('AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together');
  }
  const sessionToken = optional(env, 'AWS_SESSION_TOKEN');
  return { credentials: { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) } };
}

// ARTEFACT_STORE=file (the default) or s3 with S3_BUCKET, S3_REGION, S3_ENDPOINT, S3_PREFIX, S3_PUBLIC_URL, S3_PART_MB,
// S3_TIMEOUT_SEC.
export function artefactStore(env: Env): ArtefactStoreConfig {
  const kind = text(env, 'ARTEFACT_STORE', 'file').toLowerCase();
  if (kind === 'file') return { kind };
  if (kind !== 's3') throw new ConfigError(`ARTEFACT_STORE must be file or s3, got "${kind}"`);
  const urlOf = (name: string, protocols: string[]) => {
    const raw = optional(env, name);
    if (raw === undefined) return undefined;
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new ConfigError(`${name} must be a URL, got "${raw}"`);
    }
    if (!protocols.includes(url.protocol) || url.username || url.password) {
      throw new ConfigError(
        `${name} must be a ${protocols.join(' or ')} URL without credentials, got "${raw}"`,
      );
    }
    return raw;
  };
  const bucket = text(env, 'S3_BUCKET');
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new ConfigError(`S3_BUCKET must be an S3 bucket name, got "${bucket}"`);
  }
  const endpoint = urlOf('S3_ENDPOINT', ['http:', 'https:']);
  const publicUrl = urlOf('S3_PUBLIC_URL', ['https:', 'http:']);
  return {
    kind,
    bucket,
    region: text(env, 'S3_REGION', 'us-east-1'),
    ...(endpoint ? { endpoint } : {}),
    prefix: optional(env, 'S3_PREFIX') ?? 'artefacts/',
    ...(publicUrl ? { publicUrl } : {}),
    partBytes: integer(env, 'S3_PART_MB', 16, 5, 5_120) * 1024 * 1024,
    timeoutMs: integer(env, 'S3_TIMEOUT_SEC', 60, 1, 3_600) * 1000,
    ...awsCredentials(env),
  };
}
