import { rm } from 'node:fs/promises';
import type { ArtefactStore } from '../delivery/artefactStore.js';
import type { BuildReport } from '../delivery/contracts.js';
import type { ReportStore } from '../delivery/reportStore.js';
import { toError } from '../ops/errors.js';
import type { Logger } from '../ops/logger.js';
import { artefactFile } from '../pipeline/artefactLocation.js';

/** Removes an artefact a report named: the file itself, unless an artefact store is given. */
const removeFile: Pick<ArtefactStore, 'discard'> = {
  async discard(url) {
    const file = artefactFile(url);
    if (file) await rm(file, { force: true });
  },
};

// Records a finished build's report and returns the one that stands for its commit (the first verdict). The
// artefacts of reports that do not stand (this one, if a duplicate build finished first; an ERRORED one a retry
// replaced) are removed from the artefact store, so the standing report's artefact is the only one of its commit.
export async function settleReport(
  store: ReportStore,
  report: BuildReport,
  earlier: BuildReport | undefined,
  logger: Logger,
  artefacts: Pick<ArtefactStore, 'discard'> = removeFile,
): Promise<BuildReport> {
  const standing = await store.record(report);
  for (const other of [report, earlier]) {
    const url = other?.artefactUrl;
    if (!url || url === standing.artefactUrl) continue;
    try {
      await artefacts.discard(url);
      logger.info(
        { discarded: url, standing: standing.artefactUrl || '(none)' },
        'another report of this commit stands; discarded the artefact of one that does not',
      );
    } catch (error) {
      logger.warn({ err: toError(error), url }, 'could not discard an artefact that does not stand');
    }
  }
  return standing;
}
