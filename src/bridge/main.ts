import { loadConfig } from '../config.js';
import { closeOnSignals } from '../lifecycle.js';
import { createLogger } from '../logger.js';
import { runMain } from '../main.js';
import { startBridge } from './bridge.js';

// Entry point of the bridge process.
runMain(async () => {
  const config = loadConfig(process.env);
  const logger = createLogger({ level: config.logLevel, pretty: config.logPretty, name: 'bridge' });
  closeOnSignals(await startBridge(config, logger), logger);
});
