import { execFile } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { promisify } from 'node:util';
import { type GitServer, type GitServerOptions, startGitServer } from '../git/gitServer.js';

const run = promisify(execFile);

export interface ServedRepository {
  server: GitServer;
  /** Clone URL of the repository. */
  url: string;
  /** The repository's top directory (a working copy's top level, or the bare repository). */
  top: string;
  /** HEAD's sha and branch name; empty in a repository without commits. */
  head: string;
  branch: string;
}

/** The path is not a local git repository: the message says why, for one line on the command line. */
export class NotARepositoryError extends Error {}

// Serves one local repository (working copy or bare) over smart HTTP, and nothing beside it.
export async function serveLocalRepository(
  dir: string,
  options: Pick<GitServerOptions, 'host' | 'port' | 'path'> = {},
): Promise<ServedRepository> {
  const isDir = await stat(dir).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!isDir) throw new NotARepositoryError(`${dir} is not a directory`);
  // git's own words in English (the ownership refusal is recognised by them), whatever the user's locale.
  const inDir = (...args: string[]) =>
    run('git', args, { cwd: dir, env: { ...process.env, LC_ALL: 'C' } }).then(({ stdout }) => stdout.trim());
  const bare = await inDir('rev-parse', '--is-bare-repository').catch((error: { stderr?: string }) => {
    // git refuses a repository another user owns (CVE-2022-24765) in words that say "not a repository" to no one.
    if (/dubious ownership/.test(String(error.stderr ?? ''))) {
      throw new NotARepositoryError(
        `${dir} is owned by another user (git safe.directory); run as its owner or add it to safe.directory`,
      );
    }
    return undefined;
  });
  if (bare === undefined)
    throw new NotARepositoryError(`${dir} is not a git repository (git init it, or give a repository URL)`);
  const top = bare === 'true' ? dir : await inDir('rev-parse', '--show-toplevel');
  const head = await inDir('rev-parse', 'HEAD').catch(() => '');
  const branch = await inDir('rev-parse', '--abbrev-ref', 'HEAD').catch(() => '');
  const server = await startGitServer(dirname(top), { ...options, only: basename(top) });
  const url = `${server.baseUrl}${basename(top)}${bare === 'true' ? '' : '/.git'}`;
  return { server, url, top, head, branch };
}
