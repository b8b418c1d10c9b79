import { type Env, integer, text } from './configValues.js';
import { ConfigError } from './errors.js';

/** Cache-aware placement (PLACEMENT): builds go preferably to a host whose caches hold their repository. */
export interface PlacementConfig {
  mode: 'cache' | 'off';
  /**
   * How long a build placed on an idle warm host is kept from the other hosts (PLACEMENT_WAIT_MS): the most an idle
   * worker elsewhere waits before it takes the build itself.
   */
  waitMs: number;
}

export function placement(env: Env): PlacementConfig {
  const mode = text(env, 'PLACEMENT', 'cache').toLowerCase();
  if (mode !== 'cache' && mode !== 'off')
    throw new ConfigError(`PLACEMENT must be cache or off, got "${mode}"`);
  return { mode, waitMs: integer(env, 'PLACEMENT_WAIT_MS', 1500, 0, 60_000) };
}

// WORKER_HOST_ID (default the host name): names a host's own queue, so letters, digits, `.`, `_` and `-` only.
export function workerHostId(env: Env, fallback: string): string {
  const id = text(env, 'WORKER_HOST_ID', fallback);
  if (!/^[A-Za-z0-9._-]{1,100}$/.test(id)) {
    throw new ConfigError(`WORKER_HOST_ID must be 1-100 letters, digits, ".", "_" or "-", got "${id}"`);
  }
  return id;
}
