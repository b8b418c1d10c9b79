import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

export type BuildStatus = 'PASSED' | 'FAILED' | 'ERRORED';

export interface CommitResult {
  taskId: string;
  commitSha: string;
  branchName: string;
  status: string;
  repositoryUrl: string;
}

export interface StageReport {
  name: string;
  outcome: string;
  durationMs: number;
  summary: string;
}

/** A test that failed, then passed on a re-run of the same build. */
export interface FlakyTest {
  nodeId: string;
  /** Builds of its repository in the last 30 days in which it did so, this one included. */
  flips: number;
}

/** Why and where a test failed (one per failedTests entry, then one per flakyTests entry). */
export interface TestFailure {
  nodeId: string;
  kind: 'failed' | 'error' | 'collection' | 'timeout' | 'crashed' | 'flaky';
  message: string;
  location: string;
  traceback: string;
  output: string;
}

/** One lint finding, as the tool reported it (one per lintErrors entry). */
export interface LintFinding {
  tool: 'ruff' | 'ruff-format' | 'black';
  path: string;
  line: number;
  column: number;
  code: string;
  message: string;
  fixable: boolean;
  diff: string;
}

export interface BuildReport {
  commitSha: string;
  status: BuildStatus;
  failedTests: string[];
  lintErrors: string[];
  lineCoverage: number;
  artefactUrl: string;
  taskId: string;
  branchName: string;
  repositoryUrl: string;
  error: string;
  stages: StageReport[];
  artefactSha256: string;
  durationMs: number;
  testsRun: number;
  attempt: number;
  /** How the build was contained, in one line; starts with UNSANDBOXED when it was not. */
  sandbox: string;
  /** The interpreter the build ran on. */
  pythonVersion: string;
  /** A stored report published again for a repeated CommitResult, not the result of a new build. */
  republished: boolean;
  /** Tests that failed and then passed on a re-run: not in failedTests, and not a reason for FAILED. */
  flakyTests: FlakyTest[];
  /** Set when the build was canceled (or never run) because a newer commit of its branch was announced. */
  supersededBy: string;
  /** Tests the run selected (all, or only those the change can affect), and tests a full run would have run. */
  testsSelected: number;
  testsTotal: number;
  /** An HTTPS link to the artefact (ARTEFACT_STORE=s3 with S3_PUBLIC_URL), or ''. */
  artefactLink: string;
  /** WORKER_HOST_ID of the worker that built it. */
  workerHost: string;
  /** Its repository's git objects and environment were already in that host's caches. */
  warm: boolean;
  /** Entries left out of failedTests / lintErrors to keep the report within its limits (0 or absent: none). */
  failedTestsOmitted: number;
  lintErrorsOmitted: number;
  failures: TestFailure[];
  lintFindings: LintFinding[];
  /** Failures carrying only their node id and kind (past the first 50, or past the report's budget for details). */
  failuresTruncated: number;
}

const PROTO_PATH = fileURLToPath(new URL('../../proto/ci.proto', import.meta.url));
const root = protobuf.loadSync(PROTO_PATH);
const CommitResultType = root.lookupType('ci.CommitResult');
const BuildReportType = root.lookupType('ci.BuildReport');
const TO_OBJECT = { longs: Number, defaults: true, arrays: true } as const;

// Serialises a CommitResult the way the coding agent does.
export function encodeCommitResult(message: CommitResult): Buffer {
  return Buffer.from(CommitResultType.encode(CommitResultType.fromObject(message)).finish());
}

// CommitResult's declared fields by number (name and protobuf type), for strict decoding at the edge.
export function commitResultFields(): Map<number, { name: string; type: string }> {
  return new Map(
    CommitResultType.fieldsArray.map((field) => [field.id, { name: field.name, type: field.type }]),
  );
}

// Parses CommitResult bytes; throws on bytes that are not a CommitResult.
export function decodeCommitResult(bytes: Uint8Array): CommitResult {
  return CommitResultType.toObject(CommitResultType.decode(bytes), TO_OBJECT) as CommitResult;
}

// Serialises a BuildReport; the same report always yields the same bytes.
export function encodeBuildReport(report: BuildReport): Buffer {
  return Buffer.from(BuildReportType.encode(BuildReportType.fromObject(report)).finish());
}

// Parses BuildReport bytes, filling absent fields with their defaults.
export function decodeBuildReport(bytes: Uint8Array): BuildReport {
  return BuildReportType.toObject(BuildReportType.decode(bytes), TO_OBJECT) as BuildReport;
}
