import { loadConfig } from '../ops/config.js';
import { closeOnSignals, SHUTDOWN_DEADLINE_MS } from '../ops/lifecycle.js';
import { createLogger } from '../ops/logger.js';
import { runMain } from '../ops/runMain.js';
import { startWorker } from './worker.js';

// Entry point of a worker process; run as many as the build load needs.
runMain(async () => {
  const config = loadConfig(process.env);
  const logger = createLogger({ level: config.logLevel, pretty: config.logPretty, name: 'worker' });
  // Running builds get the drain grace period, then the usual deadline to hand back and close.
  closeOnSignals(await startWorker(config, logger), logger, config.drainGraceMs + SHUTDOWN_DEADLINE_MS);
});
