import git from 'isomorphic-git';
import { CiError } from '../ops/errors.js';
import { redactUrl } from '../ops/logger.js';

// What a failed fetch means: the server refused (not retried), the server or the network failed (retried), or the
// server answered in the git protocol itself (the caller works around it). Classified by codes, never by text.

/** Node's codes for a network that failed (a refused or reset connection, an unknown host, no route). */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'ECONNRESET',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

// The code of an error or of any error it was caused by: isomorphic-git's (HttpError, SmartHttpError) or Node's.
function codes(error: unknown): string[] {
  const found: string[] = [];
  for (let e = error; e instanceof Error && found.length < 8; e = e.cause) {
    const { code } = e as Error & { code?: unknown };
    if (typeof code === 'string') found.push(code);
  }
  return found;
}

function unreachable(url: string, error: Error): CiError {
  return new CiError('REPO_UNREACHABLE', `repository ${redactUrl(url)} is unreachable: ${error.message}`, {
    retriable: true,
    cause: error,
  });
}

// A fetch bounded in time: past it, the repository counts as unreachable (retried).
export function withTimeout<T>(work: Promise<T>, ms: number, url: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(unreachable(url, new Error(`no answer within ${ms} ms`))), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

// Turns what a fetch threw into the fault to report: the server's own answer for HTTP errors (credentials,
// permissions and missing repositories are not retried; a server error or a network fault is), or undefined when
// the server answered the git protocol itself (a refused want), which the caller works around.
export function classifyFetchFault(repositoryUrl: string, error: Error): CiError | undefined {
  const url = redactUrl(repositoryUrl);
  const said = codes(error);
  if (said.includes(git.Errors.HttpError.code)) {
    const { statusCode, statusMessage } = (error as Error & { data: HttpErrorData }).data;
    if (statusCode === 404 || statusCode === 410) {
      return new CiError('REPO_REFUSED', `no repository at ${url} (HTTP ${statusCode})`, {
        retriable: false,
        cause: error,
      });
    }
    const answer = `the server answered ${statusCode} ${statusMessage}`.trim();
    const hint = HTTP_HINTS[statusCode];
    if (hint) {
      return new CiError('REPO_REFUSED', `fetching from ${url} failed: ${answer} (${hint})`, {
        retriable: false,
        cause: error,
      });
    }
    return unreachable(repositoryUrl, new Error(answer));
  }
  if (said.includes(git.Errors.SmartHttpError.code)) {
    // isomorphic-git's own words end in what the server sent, which may be nothing at all.
    const preview = String((error as Error & { data?: { preview?: unknown } }).data?.preview ?? '').trim();
    const sent = preview ? `it sent ${JSON.stringify(preview.slice(0, 120))}` : 'it sent an empty body';
    return new CiError('REPO_REFUSED', `${url} answered, but not as a git smart-HTTP server: ${sent}`, {
      retriable: false,
      cause: error,
    });
  }
  if (said.some((code) => NETWORK_CODES.has(code))) return unreachable(repositoryUrl, error);
  return undefined;
}

interface HttpErrorData {
  statusCode: number;
  statusMessage: string;
}

const HTTP_HINTS: Record<number, string> = {
  401: 'credentials missing or wrong: set GIT_HTTP_USERNAME and GIT_HTTP_PASSWORD',
  403: 'the credentials may not read this repository',
};
