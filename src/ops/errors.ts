import type { StageReport } from '../delivery/contracts.js';

// Error classes with a literal code and a retriable flag, so callers decide retry vs. verdict without parsing text.

export type ErrorCode =
  /** A bad environment variable (ConfigError). */
  | 'CONFIG_INVALID'
  /** The repository's server did not answer, or answered with a server error (retried). */
  | 'REPO_UNREACHABLE'
  /** The repository's server refused: credentials, permissions, no such repository, not git (not retried). */
  | 'REPO_REFUSED'
  | 'COMMIT_MISSING'
  /** The build sandbox could not be set up or entered. */
  | 'SANDBOX_FAULT'
  /** One of the runner's own processes (a tool, the settings reader, pytest) could not be started. */
  | 'PROCESS_NOT_STARTED'
  /** The package index could not be reached while installing. */
  | 'PACKAGE_INDEX_UNREACHABLE'
  /** The runner could not make a shared or per-build Python environment. */
  | 'ENVIRONMENT_FAULT'
  /** The runner's Python or its pinned tools are missing or could not be installed. */
  | 'TOOLCHAIN_FAULT'
  /** Another process held a lock the build needed for too long. */
  | 'LOCK_TIMEOUT'
  /** The build was canceled (its worker is shutting down). */
  | 'BUILD_CANCELED'
  /** The artefact store (S3) could not take the artefact (retried). */
  | 'ARTEFACT_STORE_FAULT'
  /** A host fault with a system error code (disk full, too many open files): retried. */
  | 'HOST_FAULT'
  /** A defect in the runner itself (a TypeError, an unexpected value): not retried, so it is seen. */
  | 'INTERNAL';

/** Base of every error ci-runner throws on purpose. */
export class CiError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;

  constructor(code: ErrorCode, message: string, options: { retriable: boolean; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CiError';
    this.code = code;
    this.retriable = options.retriable;
  }
}

/**
 * A fault that stopped a build short of a verdict, with the stage it hit and every stage that had finished, so its
 * ERRORED report says where it stopped. Keeps the cause's code and retriability.
 */
export class BuildFault extends CiError {
  constructor(
    readonly stage: string,
    readonly stages: StageReport[],
    cause: Error,
  ) {
    super(codeOf(cause), cause.message, {
      retriable: isRetriable(cause),
      cause,
    });
    this.name = 'BuildFault';
  }
}

/** A bad environment variable: the process must stop at start-up naming it. */
export class ConfigError extends CiError {
  constructor(message: string) {
    super('CONFIG_INVALID', message, { retriable: false });
    this.name = 'ConfigError';
  }
}

// Turns whatever was thrown into an Error, so every catch handles one shape; a non-Error is kept as its cause.
export function toError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  let text: string;
  try {
    text = typeof thrown === 'string' ? thrown : (JSON.stringify(thrown) ?? String(thrown));
  } catch {
    text = String(thrown);
  }
  return new Error(text, { cause: thrown });
}

// A Node system error (ENOSPC, EMFILE, ECONNRESET...): a fault of the host or the network, not of the code.
function isSystemError(error: Error): boolean {
  const { code } = error as Error & { code?: unknown };
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code);
}

// The code a fault is reported with: its own, HOST_FAULT for a system error, INTERNAL for anything else.
function codeOf(error: Error): ErrorCode {
  if (error instanceof CiError) return error.code;
  return isSystemError(error) ? 'HOST_FAULT' : 'INTERNAL';
}

// True when the fault may go away on its own (network, service restart, a full disk cleaned up) and the build
// should be retried: a CiError says so itself, a system error is retried, a defect (TypeError...) is not.
export function isRetriable(error: Error): boolean {
  if (error instanceof CiError) return error.retriable;
  return isSystemError(error);
}
