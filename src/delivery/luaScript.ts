import { createHash } from 'node:crypto';
import type { ChainableCommander, Redis } from 'ioredis';

type Arg = string | number | Buffer;

const noScript = (error: unknown) => error instanceof Error && error.message.startsWith('NOSCRIPT');

/**
 * A Lua script sent by its SHA-1 (EVALSHA), in full (EVAL, which also caches it on the server) only when the server
 * does not know it yet: after a restart, a failover or SCRIPT FLUSH.
 */
export class LuaScript {
  readonly sha: string;

  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  async run(redis: Redis, keys: string[], args: Arg[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!noScript(error)) throw error;
      return redis.eval(this.source, keys.length, ...keys, ...args);
    }
  }

  // The same, with the reply's strings as Buffers.
  async runBuffer(redis: Redis, keys: string[], args: Arg[]): Promise<unknown> {
    try {
      return await redis.callBuffer('EVALSHA', this.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!noScript(error)) throw error;
      return redis.callBuffer('EVAL', this.source, keys.length, ...keys, ...args);
    }
  }

  // Runs it once per call in one round trip, in order. A NOSCRIPT reply means that call did not run: those calls
  // run again, in order, with EVAL.
  async runMany(redis: Redis, calls: Array<{ keys: string[]; args: Arg[] }>): Promise<unknown[]> {
    const pipeline: ChainableCommander = redis.pipeline();
    for (const { keys, args } of calls) pipeline.evalsha(this.sha, keys.length, ...keys, ...args);
    const replies = (await pipeline.exec()) ?? [];
    const results: unknown[] = [];
    for (const [index, [error, reply]] of replies.entries()) {
      if (!error) results.push(reply);
      else if (noScript(error)) {
        const { keys, args } = calls[index] as { keys: string[]; args: Arg[] };
        results.push(await redis.eval(this.source, keys.length, ...keys, ...args));
      } else throw error;
    }
    return results;
  }
}
