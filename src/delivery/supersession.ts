import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { redactUrl } from '../ops/logger.js';
import { LuaScript } from './luaScript.js';
import type { BuildJobData } from './queue.js';

/** Where an announced commit stands on its branch, as the bridge decides it. */
export type Standing =
  /** The newest commit announced on its branch; `previous` (if any) is the tip it replaced, to be canceled. */
  | { kind: 'tip'; previous: BuildJobData | undefined }
  /** A newer commit of its branch was announced before this one arrived: this one is not built. */
  | { kind: 'older'; tip: string }
  /** Announced at the same millisecond as the tip: neither is canceled. */
  | { kind: 'tied'; tip: string };

// Moves a branch's tip to the announced commit when it is newer (by announcement time), atomically; returns what the
// commit is to the branch. KEYS[1]: the branch's tip; KEYS[2]: the commit's supersession mark, cleared when it becomes
// the tip (a branch reset to a commit superseded earlier builds it). ARGV: sha, announced at (ms), the commit's job
// data, TTL (s). A repeated announcement of the tip returns the tip it replaced again, so a cancellation cut short
// is finished.
const ADVANCE = new LuaScript(`
local tip = redis.call('HMGET', KEYS[1], 'sha', 'at', 'previous')
if tip[1] == ARGV[1] then return {'tip', tip[3] or ''} end
if tip[1] then
  local at, tipAt = tonumber(ARGV[2]), tonumber(tip[2])
  if at < tipAt then return {'older', tip[1]} end
  if at == tipAt then return {'tied', tip[1]} end
end
local previous = redis.call('HGET', KEYS[1], 'data') or ''
redis.call('HSET', KEYS[1], 'sha', ARGV[1], 'at', ARGV[2], 'data', ARGV[3], 'previous', previous)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('DEL', KEYS[2])
return {'tip', previous}`);

/**
 * Which commit is the newest announced on each (repository, branch), and which running builds were superseded: the
 * bridge moves the tips and marks running builds to cancel, the workers read the marks.
 */
export class Supersession {
  constructor(
    private readonly redis: Redis,
    private readonly queueName: string,
    private readonly retentionSeconds: number,
  ) {}

  private tipKey(data: BuildJobData): string {
    const group = createHash('sha256')
      .update(`${redactUrl(data.repositoryUrl)}\n${data.branchName}`)
      .digest('hex');
    return `ci-runner:${this.queueName}:branch-tip:${group}`;
  }

  private markKey(commitSha: string): string {
    return `ci-runner:${this.queueName}:superseded:${commitSha}`;
  }

  // Each build's standing on its branch, in order, in one round trip.
  async advance(builds: BuildJobData[]): Promise<Standing[]> {
    if (builds.length === 0) return [];
    const replies = await ADVANCE.runMany(
      this.redis,
      builds.map((data) => ({
        keys: [this.tipKey(data), this.markKey(data.commitSha)],
        args: [data.commitSha, data.announcedAt ?? Date.now(), JSON.stringify(data), this.retentionSeconds],
      })),
    );
    return replies.map((reply) => {
      const [kind, value] = reply as [string, string];
      if (kind === 'older' || kind === 'tied') return { kind, tip: value };
      return { kind: 'tip', previous: value ? (JSON.parse(value) as BuildJobData) : undefined };
    });
  }

  // Marks the build of commitSha as superseded by newerSha: a worker running it cancels it, one about to start it
  // does not build it.
  async mark(commitSha: string, newerSha: string): Promise<void> {
    await this.redis.set(this.markKey(commitSha), newerSha, 'EX', this.retentionSeconds);
  }

  // The newer sha each of these builds was superseded by, or undefined: one round trip.
  async supersededBy(commitShas: string[]): Promise<Array<string | undefined>> {
    if (commitShas.length === 0) return [];
    const values = await this.redis.mget(commitShas.map((sha) => this.markKey(sha)));
    return values.map((value) => value ?? undefined);
  }
}
