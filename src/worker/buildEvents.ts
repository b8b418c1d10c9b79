import type { BuildStatus } from '../delivery/contracts.js';
import { toError } from '../ops/errors.js';
import type { Logger } from '../ops/logger.js';

/** What happens in a worker, for observers (metrics). Observers cannot break a build: their errors are logged. */
export interface BuildEventMap {
  buildFinished: { status: BuildStatus; durationMs: number };
  stageFinished: { stage: string; outcome: string; durationMs: number };
  cache: { cache: 'git' | 'env'; hit: boolean };
  retry: { reason: string };
  reportPublished: { commitSha: string };
  flakyTests: { count: number };
  /** Connections a build's egress proxy refused (BUILD_EGRESS=index). */
  egressRefused: { count: number };
  /** A build not finished because a newer commit of its branch was announced: canceled running, or not started. */
  superseded: { when: 'running' | 'before_start' };
}

type Listener<K extends keyof BuildEventMap> = (event: BuildEventMap[K]) => void;

export class BuildEvents {
  private readonly listeners: { [K in keyof BuildEventMap]?: Array<Listener<K>> } = {};

  constructor(private readonly logger: Logger) {}

  on<K extends keyof BuildEventMap>(name: K, listener: Listener<K>): void {
    const list = (this.listeners[name] ?? []) as Array<Listener<K>>;
    list.push(listener);
    (this.listeners as Record<string, unknown>)[name] = list;
  }

  emit<K extends keyof BuildEventMap>(name: K, event: BuildEventMap[K]): void {
    for (const listener of (this.listeners[name] ?? []) as Array<Listener<K>>) {
      try {
        listener(event);
      } catch (thrown) {
        this.logger.warn({ err: toError(thrown), event: name }, 'an observer failed; the build goes on');
      }
    }
  }
}
