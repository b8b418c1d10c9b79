import type { Logger } from '../ops/logger.js';
import type { BuildSandbox } from '../sandbox/buildSandbox.js';

export type StageName = 'checkout' | 'settings' | 'install' | 'lint' | 'test' | 'coverage' | 'artefact';

/** What every stage gets besides its own input. Stages know nothing of Kafka, Redis or metrics. */
export interface StageContext {
  logger: Logger;
  signal: AbortSignal;
  /** Private to this build: src/, venv/, reports/, home/, tmp/ live under it. */
  buildDir: string;
  /** Appends a line to the build's log (the job log on a worker). */
  log: (line: string) => void;
  /** Runs every process the repository controls; stages pass `sandbox.launch(...)` to runBounded. */
  sandbox: BuildSandbox;
}

/** A finished stage. Failure is data: only infrastructure faults throw. */
export type StageResult<T> =
  | { outcome: 'passed'; durationMs: number; summary: string; value: T }
  | { outcome: 'failed'; durationMs: number; summary: string; value: T }
  /** value: what the stage learnt before its time ran out (tests that had failed, the one running). */
  | { outcome: 'timedOut'; durationMs: number; summary: string; value?: T }
  | { outcome: 'canceled'; durationMs: number; summary: string };

export type StageOutcome = StageResult<unknown>['outcome'];
