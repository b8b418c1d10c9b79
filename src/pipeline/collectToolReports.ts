import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readBuildFile } from './readBuildFile.js';

/** Reports the build's tools write (in its out/ directory), copied into the artefact's reports/. */
const TOOL_REPORTS = ['junit.xml', 'coverage.json', 'pytest-results.json'];

// Copies the tools' reports out of the build's reach into the runner's reports, read as plain files only.
export async function collectToolReports(out: string, reports: string): Promise<void> {
  for (const name of TOOL_REPORTS) {
    const bytes = await readBuildFile(out, name);
    if (bytes) await writeFile(join(reports, name), bytes);
  }
}
