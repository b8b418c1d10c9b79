import { CiError, ConfigError } from '../ops/errors.js';

/**
 * What `ci-runner` commands exit with. Verdicts first (a script's `case $?`), then sysexits(3) codes, which never
 * collide with them.
 */
export const EXIT = {
  PASSED: 0,
  FAILED: 1,
  ERRORED: 2,
  /** Bad arguments: a wrong option, a sha that is not one, a path that is not a repository. */
  USAGE: 64,
  /** Kafka, Redis or a git server that cannot be reached. */
  UNAVAILABLE: 69,
  /** A fault in the runner itself. */
  SOFTWARE: 70,
  /** No report in time (enqueue): try again later. */
  TEMPFAIL: 75,
  /** A bad environment variable. */
  CONFIG: 78,
} as const;

export const EXIT_CODES_HELP = `Exit status: 0 PASSED, 1 FAILED, 2 ERRORED; 64 bad arguments, 69 a service or server unreachable,
70 runner fault, 75 no report in time (enqueue), 78 bad environment variable.`;

/** The command was called wrongly; the message says what to do instead. */
export class UsageError extends Error {}

/** A service or server the command needs cannot be reached. */
export class UnavailableError extends Error {}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ECONNRESET',
]);

// True for errors that mean "could not connect": Node's socket errors, kafkajs's and ioredis's connection errors.
function isUnreachable(error: Error): boolean {
  for (let cause: unknown = error; cause instanceof Error; cause = cause.cause) {
    const { code, name } = cause as Error & { code?: string };
    if (code && NETWORK_CODES.has(code)) return true;
    if (/KafkaJSConnectionError|KafkaJSNumberOfRetriesExceeded|KafkaJSBrokerNotFound/.test(name)) return true;
    if (cause instanceof CiError && cause.code === 'REPO_UNREACHABLE') return true;
  }
  return false;
}

// The exit code for an error a command threw.
export function exitCodeOf(error: Error): number {
  if (error instanceof UsageError) return EXIT.USAGE;
  if (error instanceof ConfigError) return EXIT.CONFIG;
  if (error instanceof UnavailableError || isUnreachable(error)) return EXIT.UNAVAILABLE;
  return EXIT.SOFTWARE;
}
