import { decide } from '../bridge/validate.js';
import { encodeCommitResult } from '../delivery/contracts.js';
import { loadConfig } from '../ops/config.js';
import { createLogger } from '../ops/logger.js';
import { enqueueAndWait } from './enqueueAndWait.js';
import { EXIT, UsageError } from './exitCodes.js';
import { formatReport } from './formatReport.js';
import { parseCommand } from './parseCommand.js';
import { ENQUEUE_USAGE } from './usage.js';

// `ci-runner enqueue` (also `npm run enqueue`): what the coding agent does, by hand, then waits like the orchestrator.
export async function enqueueCommand(argv: string[]): Promise<number> {
  const args = parseCommand(argv, ENQUEUE_USAGE, {
    repo: { type: 'string' },
    sha: { type: 'string' },
    branch: { type: 'string' },
    task: { type: 'string' },
    status: { type: 'string', default: 'SUCCESS' },
    timeout: { type: 'string', default: '900' },
    json: { type: 'boolean', default: false },
    verbose: { type: 'boolean', short: 'v', default: false },
  });
  if (!args) return 0;
  const { values } = args as { values: Record<string, string | boolean | undefined> };
  const config = loadConfig(process.env, process.cwd(), ['kafka']);
  const repositoryUrl = (values.repo as string | undefined) ?? config.remoteRepo;
  if (!values.sha || !values.branch || !repositoryUrl) {
    throw new UsageError('--sha, --branch and --repo (or REMOTE_REPO) are required (--help for usage)');
  }
  const timeoutMs = Number(values.timeout) * 1000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new UsageError(`--timeout must be a positive number of seconds, got "${values.timeout}"`);
  }
  const message = {
    repositoryUrl,
    commitSha: values.sha as string,
    branchName: values.branch as string,
    taskId: (values.task as string | undefined) ?? `manual-${Date.now()}`,
    status: values.status as string,
  };
  // The bridge's own edge validation: what it would dead-letter is refused here, before waiting for a report.
  const decision = decide(encodeCommitResult(message), undefined);
  if (decision.kind === 'reject') {
    throw new UsageError(`the bridge would dead-letter this CommitResult: ${decision.reason}`);
  }
  if (decision.kind === 'skip') {
    process.stderr.write(
      `ci-runner enqueue: ${decision.reason}: the bridge builds nothing for it; sending anyway\n`,
    );
  }
  const logger = createLogger({ level: 'silent', pretty: false, name: 'enqueue' });
  const outcome = await enqueueAndWait(
    config.kafka,
    {
      commitResults: config.topicCommitResults,
      buildReports: config.topicBuildReports,
      deadLetter: config.topicDeadLetter,
    },
    { ...message, timeoutMs },
    logger,
  );
  if (outcome.kind === 'dead-lettered') {
    throw new UsageError(`the bridge dead-lettered this CommitResult: ${outcome.reason}`);
  }
  if (outcome.kind === 'timeout') {
    process.stderr.write(`ci-runner enqueue: ${outcome.message}\n`);
    return EXIT.TEMPFAIL;
  }
  const { report } = outcome;
  process.stdout.write(
    `${values.json ? JSON.stringify(report, null, 2) : formatReport(report, values.verbose === true)}\n`,
  );
  return EXIT[report.status];
}
