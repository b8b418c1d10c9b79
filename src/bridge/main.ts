import { loadConfig } from '../ops/config.js';
import { closeOnSignals } from '../ops/lifecycle.js';
import { createLogger } from '../ops/logger.js';
import { runMain } from '../ops/runMain.js';
import { startBridge } from './bridge.js';

// Entry point of the bridge process.
runMain(async () => {
  const config = loadConfig(process.env);
  const logger = createLogger({ level: config.logLevel, pretty: config.logPretty, name: 'bridge' });
  closeOnSignals(await startBridge(config, logger), logger);
});
