import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// The one owner of where an artefact lives and how it is named: its file, its URL in a report, its board link.

/** Hex digits of the artefact's sha256 in its file name. */
const NAME_HASH_CHARS = 16;

/**
 * `<artefactDir>/<commit sha>.<sha256 prefix>.tar.gz`: named by its content, so two builds of one commit never
 * overwrite each other's artefact and a report's artefact_sha256 always matches the file its artefact_url names.
 */
export function artefactPath(artefactDir: string, commitSha: string, sha256: string): string {
  return join(artefactDir, `${commitSha}.${sha256.slice(0, NAME_HASH_CHARS)}.tar.gz`);
}

/** A unique name for an artefact being written, in its final directory (renamed when complete). */
export function partialArtefactPath(artefactDir: string, commitSha: string, unique: string): string {
  return join(artefactDir, `${commitSha}.tar.gz.tmp-${unique}`);
}

/** The artefact_url a report gives for an artefact file. */
export function artefactUrl(path: string): string {
  return `file://${path}`;
}

/** The local file an artefact_url names, or undefined when it names none (empty, or not a file: URL). */
export function artefactFile(url: string | undefined): string | undefined {
  return url?.startsWith('file://') ? fileURLToPath(url) : undefined;
}

/** The name the board serves a commit's artefact under (the standing report's file): `<sha>.tar.gz`. */
export function downloadName(commitSha: string): string {
  return `${commitSha}.tar.gz`;
}

/** Where the board serves artefacts, each under its download name. */
export const BOARD_ARTEFACTS = '/artefacts';

/** The board's link to the artefact of a commit's standing report. */
export function boardArtefactLink(commitSha: string): string {
  return `${BOARD_ARTEFACTS}/${downloadName(commitSha)}`;
}

/** The commit a download name names, or undefined. */
export function commitOfDownloadName(name: string): string | undefined {
  return /^([0-9a-f]{40})\.tar\.gz$/.exec(name)?.[1];
}
