import { decide } from '../bridge/validate.js';
import { loadConfig } from '../config.js';
import { encodeCommitResult } from '../contracts.js';
import { enqueueAndWait } from '../enqueueAndWait.js';
import { formatReport } from '../formatReport.js';
import { createLogger } from '../logger.js';
import { parseCommand } from './parseCommand.js';

export const ENQUEUE_USAGE = `usage: ci-runner enqueue --sha <40-hex sha> --branch <name> [--repo <url>] [--task <id>]
                         [--status SUCCESS] [--timeout <seconds>] [--json]
Produces a CommitResult to Kafka (KAFKA_BROKERS) and prints the BuildReport when it arrives.
Exit status: 0 PASSED, 1 FAILED, 2 ERRORED, 3 no report in time.`;

const EXIT = { PASSED: 0, FAILED: 1, ERRORED: 2 } as const;

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
  });
  if (!args) return 0;
  const { values } = args as { values: Record<string, string | boolean | undefined> };
  const config = loadConfig(process.env, process.cwd(), ['kafka']);
  const repositoryUrl = (values.repo as string | undefined) ?? config.remoteRepo;
  if (!values.sha || !values.branch || !repositoryUrl) {
    process.stderr.write(`--sha, --branch and --repo (or REMOTE_REPO) are required\n${ENQUEUE_USAGE}\n`);
    return 2;
  }
  const timeoutMs = Number(values.timeout) * 1000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    process.stderr.write(
      `ci-runner enqueue: --timeout must be a positive number of seconds, got "${values.timeout}"\n`,
    );
    return 2;
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
    process.stderr.write(
      `ci-runner enqueue: the bridge would reject this CommitResult: ${decision.reason}\n`,
    );
    return 2;
  }
  if (decision.kind === 'skip') {
    process.stderr.write(
      `ci-runner enqueue: ${decision.reason}: the bridge builds nothing for it; sending anyway\n`,
    );
  }
  const logger = createLogger({ level: 'warn', pretty: false, name: 'enqueue' });
  try {
    const report = await enqueueAndWait(
      config.kafkaBrokers,
      { commitResults: config.topicCommitResults, buildReports: config.topicBuildReports },
      { ...message, timeoutMs },
      logger,
    );
    process.stdout.write(`${values.json ? JSON.stringify(report, null, 2) : formatReport(report)}\n`);
    return EXIT[report.status];
  } catch (error) {
    process.stderr.write(`ci-runner: ${(error as Error).message}\n`);
    return 3;
  }
}
