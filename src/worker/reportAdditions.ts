import type { ArtefactStore } from '../delivery/artefactStore.js';
import type { BuildReport } from '../delivery/contracts.js';
import { toError } from '../ops/errors.js';
import type { Logger } from '../ops/logger.js';
import { artefactFile } from '../pipeline/artefactLocation.js';
import type { FlakeHistory } from './flakeHistory.js';

// The report with the host that built it and whether its caches held the repository (git objects and environment),
// said in the job log too.
export function onHost(
  report: BuildReport,
  host: string,
  cached: Partial<Record<'git' | 'env', boolean>>,
  jobLog: (line: string) => void,
): BuildReport {
  const warm = cached.git === true && cached.env === true;
  const missed = [cached.git === false && 'git objects', cached.env === false && 'environment'].filter(
    Boolean,
  );
  const why = warm
    ? 'git objects and environment cached'
    : missed.length
      ? `not cached: ${missed.join(', ')}`
      : 'no caches used';
  jobLog(`ran ${warm ? 'warm' : 'cold'} on host ${host} (${why})`);
  return { ...report, workerHost: host, warm };
}

// Puts the build's artefact into the artefact store before anything reports it: the report names it there.
export async function keepArtefact(
  artefacts: ArtefactStore,
  report: BuildReport,
  log: Logger,
  jobLog: (line: string) => void,
  signal?: AbortSignal,
): Promise<BuildReport> {
  const path = artefactFile(report.artefactUrl);
  if (!path) return report;
  const kept = await artefacts.keep(path, signal);
  if (kept.how) {
    log.info({ artefact: kept.url, how: kept.how }, 'artefact stored');
    jobLog(`artefact stored at ${kept.url} (${kept.how})`);
  }
  return { ...report, artefactUrl: kept.url, artefactLink: kept.link };
}

// The report with each flaky test's flips in its repository's history (best effort: without Redis, this build's).
export async function withFlakeHistory(
  report: BuildReport,
  flakes: FlakeHistory,
  log: Logger,
): Promise<BuildReport> {
  if (report.flakyTests.length === 0) return report;
  try {
    return { ...report, flakyTests: await flakes.record(report) };
  } catch (error) {
    log.warn({ err: toError(error) }, 'flaky tests not recorded in their history');
    return report;
  }
}
