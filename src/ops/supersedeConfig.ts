import { compileBranchFilter } from './branchFilter.js';
import { type Env, text } from './configValues.js';
import { ConfigError } from './errors.js';

/** Which builds a newer commit on their branch cancels: none, those still waiting, or running ones too. */
export type CancelSupersededMode = 'off' | 'waiting' | 'running';

export interface SupersedeConfig {
  mode: CancelSupersededMode;
  /** The branches it applies to, a glob list with `!` negation (CANCEL_SUPERSEDED_BRANCHES). */
  branches: string;
}

const SUPERSEDE_MODES: readonly CancelSupersededMode[] = ['off', 'waiting', 'running'];

export function supersede(env: Env): SupersedeConfig {
  const mode = text(env, 'CANCEL_SUPERSEDED', 'waiting').toLowerCase();
  if (!(SUPERSEDE_MODES as readonly string[]).includes(mode)) {
    throw new ConfigError(`CANCEL_SUPERSEDED must be off, waiting or running, got "${mode}"`);
  }
  const branches = text(env, 'CANCEL_SUPERSEDED_BRANCHES', '!main,!master');
  compileBranchFilter(branches, 'CANCEL_SUPERSEDED_BRANCHES');
  return { mode: mode as CancelSupersededMode, branches };
}
