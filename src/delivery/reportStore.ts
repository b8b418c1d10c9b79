import type { Redis } from 'ioredis';
import { type BuildReport, decodeBuildReport, encodeBuildReport } from './contracts.js';
import { DEFAULT_REPORT_LIMITS, fitReport, type ReportLimits } from './fitReport.js';
import { LuaScript } from './luaScript.js';

// The first verdict for a sha stands (an ERRORED one only until a retry reaches a verdict): stores the report with a
// retention and queues it for publishing, atomically.
const RECORD_FIRST = new LuaScript(`
local existing = redis.call('GET', KEYS[1])
if existing and redis.call('GET', KEYS[3]) ~= 'ERRORED' then return existing end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
return ARGV[1]`);

// Claims an outbox entry for publishing if it still holds what was read and nobody else holds it.
const CLAIM = new LuaScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4], 'NX') then return 1 end
return 0`);

// Extends a publication claim only if this owner still holds it.
const RENEW = new LuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`);

// Releases a publication claim only if this owner still holds it.
const RELEASE = new LuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`);

// Replaces a report (stored and waiting in the outbox) with a reduced one, only where it still holds the old bytes.
const REPLACE = new LuaScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('SET', KEYS[2], ARGV[3], 'KEEPTTL') end
return 1`);

// Removes an outbox entry only if it still holds what was published.
const ACKNOWLEDGE = new LuaScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0`);

/**
 * The one report of each commit, kept in Redis: every later build or delivery of that sha gets these exact bytes,
 * and the outbox holds the reports not yet acknowledged by Kafka. Knows nothing of Kafka itself.
 */
export class ReportStore {
  private readonly outbox: string;

  constructor(
    private readonly redis: Redis,
    private readonly queueName: string,
    private readonly retentionSeconds: number,
    /** Every report recorded is kept within these (the reports topic's record limit, REPORT_MAX_ENTRIES). */
    private readonly limits: ReportLimits = DEFAULT_REPORT_LIMITS,
  ) {
    this.outbox = `ci-runner:${queueName}:outbox`;
  }

  private key(commitSha: string): string {
    return `ci-runner:${this.queueName}:report:${commitSha}`;
  }

  // Records a finished build's report, kept within the limits, unless the sha already has a PASSED or FAILED one;
  // resolves with the report that stands.
  async record(report: BuildReport): Promise<BuildReport> {
    const bytes = encodeBuildReport(fitReport(report, this.limits));
    const standing = (await RECORD_FIRST.runBuffer(
      this.redis,
      [this.key(report.commitSha), this.outbox, `${this.key(report.commitSha)}:status`],
      [bytes, this.retentionSeconds, report.commitSha, report.status],
    )) as Buffer;
    return decodeBuildReport(standing);
  }

  // The stored report of a sha, if it has been built.
  async get(commitSha: string): Promise<BuildReport | undefined> {
    const bytes = await this.redis.getBuffer(this.key(commitSha));
    return bytes ? decodeBuildReport(bytes) : undefined;
  }

  // The stored report status (PASSED, FAILED, ERRORED) of each sha, or null where there is none: one round trip.
  async statuses(commitShas: string[]): Promise<Array<string | null>> {
    if (commitShas.length === 0) return [];
    return this.redis.mget(commitShas.map((sha) => `${this.key(sha)}:status`));
  }

  // Puts the stored verdict (PASSED or FAILED) of a sha back in the outbox, marked as republished; false when the
  // sha has none (never built, or ERRORED: that is no verdict on the commit, and a new CommitResult builds it again).
  async republish(commitSha: string): Promise<boolean> {
    const stored = await this.get(commitSha);
    if (!stored || stored.status === 'ERRORED') return false;
    await this.redis.hset(this.outbox, commitSha, encodeBuildReport({ ...stored, republished: true }));
    return true;
  }

  // Reports waiting for Kafka, by sha, a page at a time (HSCAN: a large backlog is never read in one reply).
  async *pending(pageSize = 100): AsyncGenerator<Array<[string, Buffer]>> {
    let cursor = '0';
    do {
      const [next, flat] = await this.redis.hscanBuffer(this.outbox, cursor, 'COUNT', pageSize);
      cursor = next.toString();
      const page: Array<[string, Buffer]> = [];
      for (let i = 0; i + 1 < flat.length; i += 2)
        page.push([(flat[i] as Buffer).toString(), flat[i + 1] as Buffer]);
      if (page.length > 0) yield page;
    } while (cursor !== '0');
  }

  // Marks a report as published (unless the entry changed meanwhile).
  async acknowledge(commitSha: string, bytes: Buffer): Promise<void> {
    await ACKNOWLEDGE.run(this.redis, [this.outbox], [commitSha, bytes]);
  }

  // Claims the right to publish a sha's outbox entry (as read: these bytes) for ttlMs, so only one process publishes
  // it at a time; false when another process holds the claim or the entry has been published since it was read.
  async claim(commitSha: string, bytes: Buffer, owner: string, ttlMs: number): Promise<boolean> {
    const claimed = await CLAIM.run(
      this.redis,
      [this.outbox, `${this.outbox}:claim:${commitSha}`],
      [commitSha, bytes, owner, ttlMs],
    );
    return claimed === 1;
  }

  // Extends a claim this owner still holds (a send slower than the claim must not let another publisher in); false
  // when it lapsed.
  async renewClaim(commitSha: string, owner: string, ttlMs: number): Promise<boolean> {
    return (await RENEW.run(this.redis, [`${this.outbox}:claim:${commitSha}`], [owner, ttlMs])) === 1;
  }

  // Gives a claim up (if this owner still holds it).
  async release(commitSha: string, owner: string): Promise<void> {
    await RELEASE.run(this.redis, [`${this.outbox}:claim:${commitSha}`], [owner]);
  }

  // Replaces a waiting report Kafka refused as too large by `smaller` (stored report too, if it is the same); false
  // when the entry changed meanwhile.
  async replace(commitSha: string, bytes: Buffer, smaller: Buffer): Promise<boolean> {
    const replaced = await REPLACE.run(
      this.redis,
      [this.outbox, this.key(commitSha)],
      [commitSha, bytes, smaller],
    );
    return replaced === 1;
  }

  // How many reports wait for Kafka.
  backlog(): Promise<number> {
    return this.redis.hlen(this.outbox);
  }
}
