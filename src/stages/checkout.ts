import fs from 'node:fs';
import { mkdir } from 'node:fs/promises';
import git from 'isomorphic-git';
import http from 'isomorphic-git/http/node';
import { CiError, toError } from '../errors.js';
import { redactUrl } from '../logger.js';
import type { StageContext, StageResult } from './types.js';

export interface CheckoutInput {
  repositoryUrl: string;
  commitSha: string;
  branchName: string;
  dir: string;
  timeoutMs: number;
}

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

async function fetchCommit(input: CheckoutInput, ctx: StageContext): Promise<void> {
  const base = { fs, http, dir: input.dir, remote: 'origin', singleBranch: true, tags: false };
  try {
    await git.fetch({ ...base, ref: input.commitSha, depth: 1 });
    return;
  } catch (thrown) {
    const error = toError(thrown);
    if (
      /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ECONNRESET|HttpError/.test(`${error.name} ${error.message}`)
    ) {
      throw unreachable(input.repositoryUrl, error);
    }
    ctx.log(
      `fetching ${input.commitSha} by sha failed (${error.message}); fetching branch ${input.branchName}`,
    );
  }
  try {
    await git.fetch({ ...base, ref: input.branchName });
  } catch (thrown) {
    const error = toError(thrown);
    if (error.message === 'Could not find HEAD.') {
      // isomorphic-git issue #1654: it cannot fetch from a remote whose default branch does not exist.
      throw unreachable(input.repositoryUrl, new Error("the remote's HEAD (default branch) does not exist"));
    }
    throw unreachable(input.repositoryUrl, error);
  }
}

// Materialises exactly the requested commit (branch tip or not) into a fresh directory and proves HEAD is it.
export async function run(input: CheckoutInput, ctx: StageContext): Promise<StageResult<{ dir: string }>> {
  const started = performance.now();
  await mkdir(input.dir, { recursive: true });
  await git.init({ fs, dir: input.dir, defaultBranch: 'ci-runner' });
  await git.addRemote({ fs, dir: input.dir, remote: 'origin', url: input.repositoryUrl });
  ctx.log(`fetching ${input.commitSha} from ${redactUrl(input.repositoryUrl)}`);
  await withTimeout(fetchCommit(input, ctx), input.timeoutMs, input.repositoryUrl);
  try {
    await git.checkout({ fs, dir: input.dir, ref: input.commitSha, force: true });
  } catch (thrown) {
    throw new CiError(
      'COMMIT_MISSING',
      `commit ${input.commitSha} is not in ${redactUrl(input.repositoryUrl)}`,
      {
        retriable: true,
        cause: thrown,
      },
    );
  }
  const head = await git.resolveRef({ fs, dir: input.dir, ref: 'HEAD' });
  if (head !== input.commitSha) {
    throw new CiError('CHECKOUT_MISMATCH', `checked out ${head}, expected ${input.commitSha}`, {
      retriable: true,
    });
  }
  const durationMs = Math.round(performance.now() - started);
  return { outcome: 'passed', durationMs, summary: `checked out ${head}`, value: { dir: input.dir } };
}
