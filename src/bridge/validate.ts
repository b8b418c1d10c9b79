import type { CommitResult } from '../delivery/contracts.js';
import type { BuildJobData } from '../delivery/queue.js';
import { toError } from '../ops/errors.js';
import { readCommitResult } from './readCommitResult.js';

export type Decision =
  | { kind: 'enqueue'; data: BuildJobData }
  | { kind: 'skip'; reason: string }
  | { kind: 'reject'; reason: string };

const SHA = /^[0-9a-f]{40}$/;
const QUOTED_MAX = 80;

// A field's value for a reason (a log line, a dead letter's header): quoted, escaped and cut short.
function quote(value: string): string {
  const shown = value.length > QUOTED_MAX ? `${value.slice(0, QUOTED_MAX)}…` : value;
  return `${JSON.stringify(shown)}${value.length > QUOTED_MAX ? ` (${value.length} characters)` : ''}`;
}

// Why a branch name is not a ref git would accept (git check-ref-format rules), or undefined if it is fine.
export function refProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty';
  if (name.length > 255) return 'is longer than 255 characters';
  if (name.startsWith('-')) return 'starts with "-"';
  if (name === '@') return 'is "@"';
  if ([...name].some((char) => char.charCodeAt(0) <= 0x20 || char.charCodeAt(0) === 0x7f)) {
    return 'contains a space or control character';
  }
  if (/[~^:?*[\\]/.test(name)) return 'contains one of ~^:?*[\\';
  if (name.includes('..')) return 'contains ".."';
  if (name.includes('@{')) return 'contains "@{"';
  if (name.includes('//')) return 'contains "//"';
  if (name.startsWith('/') || name.endsWith('/')) return 'starts or ends with "/"';
  if (name.endsWith('.')) return 'ends with "."';
  for (const part of name.split('/')) {
    if (part.startsWith('.')) return 'has a component starting with "."';
    if (part.endsWith('.lock')) return 'has a component ending with ".lock"';
  }
  return undefined;
}

// Why a repository URL is not acceptable (only http(s), no options in disguise), or undefined if it is fine.
export function urlProblem(url: string): string | undefined {
  if (url.startsWith('-')) return 'starts with "-"';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'is not a URL';
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return 'is not an http(s) URL';
  if (!parsed.hostname) return 'has no host';
  if (parsed.username || parsed.password) {
    return 'carries credentials; configure GIT_HTTP_USERNAME/GIT_HTTP_PASSWORD on the runner instead';
  }
  return undefined;
}

// Validates a raw commit-results message at the edge: build it, skip it, or reject it with a reason. Only a
// well-formed CommitResult with a commit sha and a status other than SUCCESS is skipped; anything else that cannot be
// built is rejected (dead-lettered), whatever its status.
export function decide(value: Buffer | null, remoteRepo: string | undefined): Decision {
  if (!value || value.length === 0) return { kind: 'reject', reason: 'empty message' };
  let message: CommitResult;
  try {
    message = readCommitResult(value);
  } catch (thrown) {
    return { kind: 'reject', reason: `not a CommitResult: ${toError(thrown).message}` };
  }
  if (!message.commitSha.trim())
    return { kind: 'reject', reason: 'commit_sha is missing (not a CommitResult?)' };
  const sha = message.commitSha.trim().toLowerCase();
  if (!SHA.test(sha))
    return { kind: 'reject', reason: `commit_sha ${quote(message.commitSha)} is not 40 hex characters` };
  if (!message.status.trim()) return { kind: 'reject', reason: 'status is missing' };
  if (message.status !== 'SUCCESS') {
    return { kind: 'skip', reason: `status is ${quote(message.status)}, not SUCCESS` };
  }
  if (!message.taskId.trim()) return { kind: 'reject', reason: 'task_id is missing' };
  const branchProblem = refProblem(message.branchName);
  if (branchProblem)
    return { kind: 'reject', reason: `branch_name ${quote(message.branchName)} ${branchProblem}` };
  const repositoryUrl = message.repositoryUrl.trim() || remoteRepo;
  if (!repositoryUrl)
    return { kind: 'reject', reason: 'repository_url is missing and REMOTE_REPO is not set' };
  const problem = urlProblem(repositoryUrl);
  if (problem) return { kind: 'reject', reason: `repository_url ${problem}` };
  return {
    kind: 'enqueue',
    data: { taskId: message.taskId.trim(), commitSha: sha, branchName: message.branchName, repositoryUrl },
  };
}
