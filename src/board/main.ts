import { loadConfig } from '../config.js';
import { closeOnSignals } from '../lifecycle.js';
import { createLogger } from '../logger.js';
import { runMain } from '../main.js';
import { startBoard } from './board.js';

// Entry point of the board process (Bull Board for on-call).
runMain(async () => {
  const config = loadConfig(process.env, process.cwd(), ['redis']);
  const logger = createLogger({ level: config.logLevel, pretty: config.logPretty, name: 'board' });
  closeOnSignals(await startBoard(config, logger), logger);
});
