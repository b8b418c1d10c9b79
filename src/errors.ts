import type { StageReport } from './contracts.js';

// Error classes with a literal code and a retriable flag, so callers decide retry vs. verdict without parsing text.

export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'REPO_UNREACHABLE'
  | 'REPO_REFUSED'
  | 'COMMIT_MISSING'
  | 'RUNNER_FAULT'
  | 'ARTEFACT_TOO_LARGE'
  | 'INVALID_MESSAGE';

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
    super(cause instanceof CiError ? cause.code : 'RUNNER_FAULT', cause.message, {
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

// Turns whatever was thrown into an Error, so every catch handles one shape.
export function toError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  return new Error(typeof thrown === 'string' ? thrown : JSON.stringify(thrown));
}

// True when the fault may go away on its own (network, service restart) and the build should be retried.
export function isRetriable(error: Error): boolean {
  return error instanceof CiError ? error.retriable : true;
}
