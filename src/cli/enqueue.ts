import { parseArgs } from 'node:util';
import { loadConfig } from '../config.js';
import { enqueueAndWait } from '../enqueueAndWait.js';
import { formatReport } from '../formatReport.js';
import { createLogger } from '../logger.js';
import { runMain } from '../main.js';

const USAGE = `usage: npm run enqueue -- --sha <40-hex sha> --branch <name> [--repo <url>] [--task <id>]
                          [--status SUCCESS] [--timeout <seconds>] [--json]
Produces a CommitResult to Kafka and prints the BuildReport when it arrives.`;

// Entry point of `npm run enqueue`: sends one CommitResult by hand and prints its report.
runMain(async () => {
  const { values } = parseArgs({
    options: {
      repo: { type: 'string' },
      sha: { type: 'string' },
      branch: { type: 'string' },
      task: { type: 'string' },
      status: { type: 'string', default: 'SUCCESS' },
      timeout: { type: 'string', default: '900' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const config = loadConfig(process.env);
  const repositoryUrl = values.repo ?? config.remoteRepo;
  if (!values.sha || !values.branch || !repositoryUrl) {
    process.stderr.write(`--sha, --branch and --repo (or REMOTE_REPO) are required\n${USAGE}\n`);
    process.exit(2);
  }
  const logger = createLogger({ level: 'warn', pretty: false, name: 'enqueue' });
  const timeoutMs = Number(values.timeout) * 1000;
  process.stderr.write(
    `sent CommitResult for ${values.sha}; waiting up to ${values.timeout} s for its BuildReport\n`,
  );
  const report = await enqueueAndWait(
    config.kafkaBrokers,
    { commitResults: config.topicCommitResults, buildReports: config.topicBuildReports },
    {
      repositoryUrl,
      commitSha: values.sha,
      branchName: values.branch,
      taskId: values.task ?? `manual-${Date.now()}`,
      status: values.status,
      timeoutMs,
    },
    logger,
  );
  process.stdout.write(`${values.json ? JSON.stringify(report, null, 2) : formatReport(report)}\n`);
});
