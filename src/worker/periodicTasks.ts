import type { Redis } from 'ioredis';
import type { ArtefactStore } from '../delivery/artefactStore.js';
import type { Supersession } from '../delivery/supersession.js';
import type { Config } from '../ops/config.js';
import { toError } from '../ops/errors.js';
import type { Teardown } from '../ops/lifecycle.js';
import type { Logger } from '../ops/logger.js';
import { EXPIRY_INTERVAL_MS, expireArtefacts } from './expireArtefacts.js';
import { cancelSupersededBuilds, type RunningBuild } from './supersededBuilds.js';

/** How often a worker looks whether a build it runs was superseded (CANCEL_SUPERSEDED=running). */
const SUPERSEDED_POLL_MS = 1_000;

// Expires artefacts older than ARTEFACT_RETENTION_DAYS now and then on a timer (nothing when it is 0).
export function startArtefactExpiry(parts: {
  artefacts: ArtefactStore;
  redis: Redis;
  config: Readonly<Config>;
  logger: Logger;
  teardown: Teardown;
}): void {
  const { artefacts, redis, config, logger } = parts;
  if (config.artefactRetentionDays <= 0) return;
  const expire = () =>
    void expireArtefacts(artefacts, redis, config.queueName, config.artefactRetentionDays, logger);
  expire();
  const expiry = setInterval(expire, EXPIRY_INTERVAL_MS);
  expiry.unref();
  parts.teardown.add('artefact expiry', async () => clearInterval(expiry));
}

// Cancels running builds a newer commit of their branch superseded, looking every second.
export function watchSupersededBuilds(parts: {
  running: Map<string, RunningBuild>;
  supersession: Supersession;
  logger: Logger;
  teardown: Teardown;
}): void {
  const watcher = setInterval(
    () =>
      void cancelSupersededBuilds(parts.running, parts.supersession).catch((error) =>
        parts.logger.debug({ err: toError(error) }, 'could not look for superseded builds; will retry'),
      ),
    SUPERSEDED_POLL_MS,
  );
  watcher.unref();
  parts.teardown.add('superseded watcher', async () => clearInterval(watcher));
}
