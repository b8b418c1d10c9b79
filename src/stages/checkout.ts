import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import git from 'isomorphic-git';
import { CiError, toError } from '../errors.js';
import { redactUrl } from '../logger.js';
import { pathExists } from '../pathExists.js';
import { withDirLock } from '../withDirLock.js';
import { materializeTree, UnsafeTreeError } from './materializeTree.js';
import { thinPackHttp } from './thinPackHttp.js';
import type { StageContext, StageResult } from './types.js';

/** Basic-auth credentials for http(s) remotes, from configuration only. */
export interface GitCredentials {
  username: string;
  password: string;
  /** Hosts the credentials are sent to; empty means every host. */
  hosts: string[];
}

export interface CheckoutInput {
  repositoryUrl: string;
  commitSha: string;
  branchName: string;
  /** Fresh directory the tree is written to (no .git). */
  dir: string;
  /** Persistent object caches live here, one bare repository per remote. */
  cacheDir: string;
  credentials?: GitCredentials;
  timeoutMs: number;
}

const NETWORK_ERROR = /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ECONNRESET|EPIPE|socket hang up/;

function unreachable(url: string, error: Error): CiError {
  return new CiError('REPO_UNREACHABLE', `repository ${redactUrl(url)} is unreachable: ${error.message}`, {
    retriable: true,
    cause: error,
  });
}

function withTimeout<T>(work: Promise<T>, ms: number, url: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(unreachable(url, new Error(`no answer within ${ms} ms`))), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

// The object cache of one remote: keyed by its URL without credentials, so a token change keeps the cache.
export function cacheGitdir(cacheDir: string, url: string): string {
  const key = createHash('sha256').update(redactUrl(url)).digest('hex').slice(0, 20);
  return join(cacheDir, 'git', `${key}.git`);
}

function authFor(input: CheckoutInput) {
  const { credentials } = input;
  if (!credentials) return {};
  const host = new URL(input.repositoryUrl).hostname;
  if (credentials.hosts.length > 0 && !credentials.hosts.includes(host)) return {};
  return { onAuth: () => ({ username: credentials.username, password: credentials.password }) };
}

async function hasCommit(gitdir: string, sha: string, cache: object): Promise<boolean> {
  try {
    await git.readCommit({ fs, gitdir, oid: sha, cache });
    return true;
  } catch {
    return false;
  }
}

async function resolveRef(gitdir: string, ref: string): Promise<string | undefined> {
  return git.resolveRef({ fs, gitdir, ref }).catch(() => undefined);
}

function classify(input: CheckoutInput, error: Error): CiError | undefined {
  if (error.message === 'Could not find HEAD.') {
    // isomorphic-git issue #1654: it cannot fetch from a remote whose default branch does not exist.
    return unreachable(input.repositoryUrl, new Error("the remote's HEAD (default branch) does not exist"));
  }
  if (NETWORK_ERROR.test(error.message) || error.name === 'HttpError')
    return unreachable(input.repositoryUrl, error);
  return undefined;
}

const LAST_FETCHED = 'refs/ci-runner/last';
const MAX_PACKS = 64;

async function tooManyPacks(gitdir: string): Promise<boolean> {
  const names = await readdir(join(gitdir, 'objects', 'pack')).catch(() => []);
  return names.filter((name) => name.endsWith('.pack')).length > MAX_PACKS;
}

// Fetches the branch tip first: isomorphic-git announces the local ref of the branch as "have", so the server sends
// only objects the cache lacks (a branch seen for the first time starts from the last commit fetched from this
// remote). When the commit is not the tip, it is fetched by sha (servers must allow reachable shas in want).
async function fetchInto(
  gitdir: string,
  input: CheckoutInput,
  ctx: StageContext,
  cache: object,
): Promise<void> {
  const base = {
    fs,
    http: thinPackHttp,
    gitdir,
    remote: 'origin',
    singleBranch: true,
    tags: false,
    depth: 1,
    cache,
    ...authFor(input),
  };
  const localRef = `refs/heads/${input.branchName}`;
  const last = await resolveRef(gitdir, LAST_FETCHED);
  if (last && !(await resolveRef(gitdir, localRef)))
    await git.writeRef({ fs, gitdir, ref: localRef, value: last });
  try {
    await git.fetch({ ...base, ref: input.branchName });
    const tip = await resolveRef(gitdir, `refs/remotes/origin/${input.branchName}`);
    if (tip) {
      await git.writeRef({ fs, gitdir, ref: localRef, value: tip, force: true });
      await git.writeRef({ fs, gitdir, ref: LAST_FETCHED, value: tip, force: true });
    }
  } catch (thrown) {
    const error = toError(thrown);
    const fault = classify(input, error);
    if (fault) throw fault;
    ctx.log(
      `fetching branch ${input.branchName} failed (${error.message}); fetching ${input.commitSha} by sha`,
    );
  }
  if (await hasCommit(gitdir, input.commitSha, cache)) return;
  try {
    await git.fetch({ ...base, ref: input.commitSha });
  } catch (thrown) {
    const error = toError(thrown);
    const fault = classify(input, error);
    if (fault) throw fault;
    ctx.log(`fetching ${input.commitSha} by sha failed: ${error.message}`);
  }
}

// Makes sure the remote's cache holds the commit, fetching only when it does not (one fetch per remote at a time).
async function ensureCommit(
  gitdir: string,
  input: CheckoutInput,
  ctx: StageContext,
  cache: object,
): Promise<boolean> {
  await mkdir(join(input.cacheDir, 'git'), { recursive: true });
  const fetched = await withDirLock(
    `${gitdir}.lock`,
    async () => {
      if (await tooManyPacks(gitdir)) {
        // isomorphic-git cannot repack: start the cache afresh rather than slow every lookup down.
        ctx.log(`object cache ${gitdir} holds more than ${MAX_PACKS} packs; starting it afresh`);
        await rm(gitdir, { recursive: true, force: true });
      }
      if (!(await pathExists(join(gitdir, 'config')))) {
        await git.init({ fs, gitdir, bare: true, defaultBranch: 'ci-runner' });
      }
      const url = redactUrl(input.repositoryUrl);
      if ((await git.getConfig({ fs, gitdir, path: 'remote.origin.url' })) !== url) {
        await git.setConfig({ fs, gitdir, path: 'remote.origin.url', value: url });
        const refspec = '+refs/heads/*:refs/remotes/origin/*';
        await git.setConfig({ fs, gitdir, path: 'remote.origin.fetch', value: refspec });
      }
      if (await hasCommit(gitdir, input.commitSha, cache)) {
        ctx.log(`commit ${input.commitSha} already in the object cache`);
        return false;
      }
      ctx.log(`fetching ${input.commitSha} from ${url}`);
      await withTimeout(fetchInto(gitdir, input, ctx, cache), input.timeoutMs, input.repositoryUrl);
      return true;
    },
    { timeoutMs: input.timeoutMs * 2 },
  );
  return fetched;
}

// Materialises exactly the requested commit (branch tip or not) from a persistent per-remote object cache into a
// fresh directory, fetching only what the cache lacks, and proves the tree written is that commit's.
export async function run(
  input: CheckoutInput,
  ctx: StageContext,
): Promise<StageResult<{ files: number; fetched: boolean }>> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const gitdir = cacheGitdir(input.cacheDir, input.repositoryUrl);
  const cache = {};
  const fetched = await ensureCommit(gitdir, input, ctx, cache);
  // The object store is content-addressed: reading the commit by its sha is what proves we have exactly it.
  const { commit } = await git
    .readCommit({ fs, gitdir, oid: input.commitSha, cache })
    .catch((thrown: unknown) => {
      throw new CiError(
        'COMMIT_MISSING',
        `commit ${input.commitSha} cannot be fetched from ${redactUrl(input.repositoryUrl)} (not pushed, or force-pushed away)`,
        { retriable: true, cause: thrown },
      );
    });
  await mkdir(input.dir, { recursive: true });
  try {
    const files = await materializeTree(gitdir, commit.tree, input.dir, cache);
    return {
      outcome: 'passed',
      durationMs: elapsed(),
      summary: `checked out ${input.commitSha} (${files} files)`,
      value: { files, fetched },
    };
  } catch (thrown) {
    if (thrown instanceof UnsafeTreeError) {
      return {
        outcome: 'failed',
        durationMs: elapsed(),
        summary: thrown.message,
        value: { files: 0, fetched },
      };
    }
    throw thrown;
  }
}
