import { loadConfig } from '../config.js';
import { closeOnSignals } from '../lifecycle.js';
import { createLogger } from '../logger.js';
import { runMain } from '../main.js';
import { startWorker } from './worker.js';

// Entry point of a worker process; run as many as the build load needs.
runMain(async () => {
  const config = loadConfig(process.env);
  const logger = createLogger({ level: config.logLevel, pretty: config.logPretty, name: 'worker' });
  closeOnSignals(await startWorker(config, logger), logger);
});
