// `npm run faults`: kills and restarts the real processes and services, printing one line per scenario.
import { runAll } from './scenarios.js';
import { formatCounts, passed } from './tally.js';

const size = {
  commits: Number(process.env.FAULT_COMMITS ?? 8),
  kills: Number(process.env.FAULT_KILLS ?? 4),
  malformed: Number(process.env.FAULT_HOSTILE ?? 5000),
};
const results = await runAll(size, (counts) => console.log(formatCounts(counts)));
const failed = results.filter((c) => !passed(c));
process.exit(failed.length > 0 ? 1 : 0);
