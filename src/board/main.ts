import { loadConfig } from '../ops/config.js';
import { closeOnSignals } from '../ops/lifecycle.js';
import { createLogger } from '../ops/logger.js';
import { runMain } from '../ops/runMain.js';
import { startBoard } from './board.js';

// Entry point of the board process (Bull Board for on-call).
runMain(async () => {
  const config = loadConfig(process.env, process.cwd(), ['redis']);
  const logger = createLogger({ level: config.logLevel, pretty: config.logPretty, name: 'board' });
  closeOnSignals(await startBoard(config, logger), logger);
});
