import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { redactUrl } from '../ops/logger.js';
import { LuaScript } from './luaScript.js';

/** How long a worker process counts as alive after its last heartbeat. */
export const HOST_ALIVE_MS = 10_000;
/** How long a build's claim lasts unless its worker renews it (a dead worker's claim lapses after this). */
export const CLAIM_MS = 60_000;
/** How long a host stays a repository's warm host after building it (its caches may be pruned later). */
const WARM_DAYS = 7;

/** A worker host as the bridge sees it: how many builds it could start now. */
export interface HostSlots {
  host: string;
  free: number;
}

/** Who builds a commit: a worker copy of the job holds it while building; `done` once its report is recorded. */
export type Claim = { kind: 'running'; holder: string } | { kind: 'done'; holder: string };

// The name of a host's own queue, where the bridge puts builds of repositories that host's caches hold.
export function affinityQueueName(queueName: string, host: string): string {
  return `${queueName}@${host}`;
}

// Takes a claim when there is none (KEYS[1]); ARGV: holder, ms. Returns the claim that stands.
const TAKE = new LuaScript(`
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], 'running ' .. ARGV[1], 'PX', ARGV[2])
return 'running ' .. ARGV[1]`);

// Renews, finishes or drops a claim only while its holder holds it. ARGV: holder, new value ('' deletes), ms.
const UPDATE = new LuaScript(`
if redis.call('GET', KEYS[1]) ~= 'running ' .. ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1`);

/**
 * Cache-aware placement, kept in Redis: which worker hosts built each repository (their caches hold it), which hosts
 * are alive with free build slots, and which copy of a placed build holds it. A placed build has two copies, one in
 * the warm host's own queue and the canonical one (delayed a moment) in the shared queue: whichever starts first
 * claims the commit, so an idle worker never waits long for a busy warm host, and no commit is built twice.
 */
export class Placement {
  constructor(
    private readonly redis: Redis,
    private readonly queueName: string,
  ) {}

  private key(what: string): string {
    return `ci-runner:${this.queueName}:${what}`;
  }

  private warmKey(repositoryUrl: string): string {
    const repo = createHash('sha256').update(redactUrl(repositoryUrl)).digest('hex');
    return this.key(`warm:${repo}`);
  }

  // A worker process says it is alive and how many more builds it could start; `process` is unique per process.
  async heartbeat(host: string, process: string, free: number): Promise<void> {
    const field = `${host}\n${process}`;
    await this.redis.hset(this.key('hosts'), field, `${free} ${Date.now() + HOST_ALIVE_MS}`);
  }

  // The hosts with an own queue, and when each was last seen alive (ms): the bridge notes them as it places builds.
  async hostQueues(): Promise<Map<string, number>> {
    const all = await this.redis.hgetall(this.key('host-queues'));
    return new Map(Object.entries(all).map(([host, at]) => [host, Number(at) || 0]));
  }

  // Notes that these hosts have an own queue and were seen alive now.
  async sawHostQueues(hosts: string[]): Promise<void> {
    if (hosts.length === 0) return;
    const now = String(Date.now());
    await this.redis.hset(this.key('host-queues'), Object.fromEntries(hosts.map((host) => [host, now])));
  }

  // Forgets a retired host's queue.
  async forgetHostQueue(host: string): Promise<void> {
    await this.redis.hdel(this.key('host-queues'), host);
  }

  // A worker process stops: it takes no more builds.
  async leave(host: string, process: string): Promise<void> {
    await this.redis.hdel(this.key('hosts'), `${host}\n${process}`);
  }

  // The hosts with a live worker process and their free slots (summed over their processes); forgets dead ones.
  async liveHosts(): Promise<HostSlots[]> {
    const all = await this.redis.hgetall(this.key('hosts'));
    const now = Date.now();
    const hosts = new Map<string, number>();
    const dead: string[] = [];
    for (const [field, value] of Object.entries(all)) {
      const [free, until] = value.split(' ').map(Number);
      if (!(Number(until) > now)) {
        dead.push(field);
        continue;
      }
      const host = field.slice(0, field.indexOf('\n'));
      hosts.set(host, (hosts.get(host) ?? 0) + Math.max(0, Number(free) || 0));
    }
    if (dead.length) await this.redis.hdel(this.key('hosts'), ...dead);
    return [...hosts].map(([host, free]) => ({ host, free }));
  }

  // The hosts that built a repository, the most recent first.
  async warmHosts(repositoryUrl: string): Promise<string[]> {
    return this.redis.zrevrange(this.warmKey(repositoryUrl), 0, -1);
  }

  // A host built a repository: its caches hold the repository's objects and environment.
  async recordWarm(repositoryUrl: string, host: string): Promise<void> {
    const key = this.warmKey(repositoryUrl);
    const now = Date.now();
    await this.redis
      .multi()
      .zadd(key, now, host)
      // Hosts that have not built the repository for WARM_DAYS (retired ones among them) leave the set.
      .zremrangebyscore(key, 0, now - WARM_DAYS * 86_400_000)
      .pexpire(key, WARM_DAYS * 86_400_000)
      .exec();
  }

  private claimKey(commitSha: string): string {
    return this.key(`claim:${commitSha}`);
  }

  // Claims a commit for `holder` unless another copy holds it (or finished it); returns the claim that stands.
  async claim(commitSha: string, holder: string): Promise<Claim> {
    const standing = String(await TAKE.run(this.redis, [this.claimKey(commitSha)], [holder, CLAIM_MS]));
    return parseClaim(standing);
  }

  async read(commitSha: string): Promise<Claim | undefined> {
    const value = await this.redis.get(this.claimKey(commitSha));
    return value === null ? undefined : parseClaim(value);
  }

  // Keeps a running build's claim from lapsing; false when the holder no longer holds it.
  async renew(commitSha: string, holder: string): Promise<boolean> {
    const value = `running ${holder}`;
    return (await UPDATE.run(this.redis, [this.claimKey(commitSha)], [holder, value, CLAIM_MS])) === 1;
  }

  // The holder's build recorded its report: the canonical copy completes with it instead of building.
  async finish(commitSha: string, holder: string, keepMs: number): Promise<void> {
    await UPDATE.run(this.redis, [this.claimKey(commitSha)], [holder, `done ${holder}`, keepMs]);
  }

  // The holder gives the commit up (handed back, or failed before a report): another copy may build it.
  async release(commitSha: string, holder: string): Promise<void> {
    await UPDATE.run(this.redis, [this.claimKey(commitSha)], [holder, '', 0]);
  }

  // The canonical copy is done with the claim (its job completes or fails now).
  async forget(commitSha: string): Promise<void> {
    await this.redis.del(this.claimKey(commitSha));
  }
}

function parseClaim(value: string): Claim {
  const space = value.indexOf(' ');
  const holder = value.slice(space + 1);
  return value.startsWith('done ') ? { kind: 'done', holder } : { kind: 'running', holder };
}
