// What every fault scenario measures, and how `npm run faults` prints it.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { decodeBuildReport } from '../src/delivery/contracts.js';
import { type Cluster, createCluster, sleep } from './cluster.js';

/** The outcome of one scenario, as printed by `npm run faults`. */
export interface Counts {
  scenario: string;
  sent: number;
  built: number;
  reported: number;
  lost: number;
  conflicting: number;
  /** Processes of killed builds still running at the end. */
  strays: number;
  /** A commit sent after the fault was built and reported, with no process restarted by hand. */
  healthy: boolean;
  /** Reports whose artefact_sha256 is not the sha256 of the file at their artefact_url (or the file is missing). */
  mismatched: number;
  /** What else the scenario found wrong, one line each. */
  problems: string[];
  note: string;
}

/** How big each scenario is: the bounded version inside `npm test` uses small numbers. */
export interface Size {
  commits: number;
  kills: number;
  malformed: number;
}

export const REPORT_WAIT_MS = 240_000;

// Reports (first received per sha) whose artefact is not the file they name.
async function artefactMismatches(cluster: Cluster, shas: string[]): Promise<number> {
  let mismatched = 0;
  for (const sha of shas) {
    const first = cluster.reports.received(sha)[0];
    if (!first) continue;
    const report = decodeBuildReport(first.bytes);
    if (!report.artefactUrl) continue;
    const bytes = await readFile(fileURLToPath(report.artefactUrl)).catch(() => undefined);
    const sha256 = bytes ? createHash('sha256').update(bytes).digest('hex') : '';
    if (sha256 !== report.artefactSha256) mismatched += 1;
  }
  return mismatched;
}

export async function tally(
  cluster: Cluster,
  scenario: string,
  shas: string[],
  note = '',
  problems: string[] = [],
): Promise<Counts> {
  await Promise.all(shas.map((sha) => cluster.reports.waitFor(sha, REPORT_WAIT_MS).catch(() => undefined)));
  const probe = await cluster.commit(0);
  await cluster.announce(probe);
  const healthy = await cluster.reports.waitFor(probe, REPORT_WAIT_MS).then(
    (report) => report.status === 'PASSED',
    () => false,
  );
  await sleep(1_000);
  const builds = await cluster.builds();
  let conflicting = 0;
  let reported = 0;
  for (const sha of shas) {
    const received = cluster.reports.received(sha);
    if (received.length > 0) reported += 1;
    // Copies may differ only in `republished` (a stored report sent again for a repeated CommitResult).
    const verdict = (bytes: Buffer) => JSON.stringify({ ...decodeBuildReport(bytes), republished: false });
    const first = received[0] ? verdict(received[0].bytes) : undefined;
    if (received.some((r) => r.key !== sha || verdict(r.bytes) !== first)) conflicting += 1;
  }
  return {
    scenario,
    sent: shas.length,
    built: shas.reduce((sum, sha) => sum + (builds.get(sha) ?? 0), 0),
    reported,
    lost: shas.length - reported,
    conflicting,
    strays: (await cluster.strays()).length,
    healthy,
    mismatched: await artefactMismatches(cluster, shas),
    problems,
    note,
  };
}

export async function withCluster(
  name: string,
  work: (cluster: Cluster) => Promise<Counts>,
  env: Record<string, string> = {},
  topicConfig?: Record<string, string>,
) {
  const cluster = await createCluster(name, env, topicConfig);
  try {
    return await work(cluster);
  } finally {
    await cluster.close();
  }
}

// Nothing lost, nothing conflicting, nothing left running, and the service still builds.
export function passed(c: Counts): boolean {
  return (
    c.lost === 0 &&
    c.conflicting === 0 &&
    c.strays === 0 &&
    c.healthy &&
    c.mismatched === 0 &&
    c.problems.length === 0
  );
}

export function formatCounts(c: Counts): string {
  const verdict = passed(c) ? 'ok  ' : 'FAIL';
  const problems = c.problems.map((problem) => `\n       problem: ${problem}`).join('');
  return `${verdict} ${c.scenario.padEnd(44)} sent ${c.sent}  built ${c.built}  reported ${c.reported}  lost ${c.lost}  conflicting ${c.conflicting}  strays ${c.strays}  artefact mismatches ${c.mismatched}  healthy after ${c.healthy ? 'yes' : 'NO'}${c.note ? `  (${c.note})` : ''}${problems}`;
}
