import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export type Files = Record<string, string>;

/** A real git repository made by a test: a working clone that pushes to a bare repo the git server serves. */
export interface FixtureRepo {
  url: string;
  commit(files: Files, message: string, remove?: string[]): Promise<string>;
  push(branch: string): void;
  cleanup(): Promise<void>;
}

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'Fixture',
  GIT_AUTHOR_EMAIL: 'fixture@example.invalid',
  GIT_COMMITTER_NAME: 'Fixture',
  GIT_COMMITTER_EMAIL: 'fixture@example.invalid',
};

function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, env: GIT_ENV, encoding: 'utf8' }).trim();
}

// Creates <serveRoot>/<name>.git and a work tree on `branch`; commits are real and pushed on demand.
export async function createFixtureRepo(
  serveRoot: string,
  baseUrl: string,
  name: string,
  branch = 'main',
): Promise<FixtureRepo> {
  const bare = join(serveRoot, `${name}.git`);
  await mkdir(bare, { recursive: true });
  git(bare, 'init', '--bare', '--quiet', `--initial-branch=${branch}`);
  const work = await mkdtemp(join(tmpdir(), `fixture-${name}-`));
  git(work, 'init', '--quiet', `--initial-branch=${branch}`);
  git(work, 'remote', 'add', 'origin', bare);
  return {
    url: `${baseUrl}${name}.git`,
    async commit(files, message, remove = []) {
      for (const [path, content] of Object.entries(files)) {
        await mkdir(dirname(join(work, path)), { recursive: true });
        await writeFile(join(work, path), content);
      }
      for (const path of remove) git(work, 'rm', '--quiet', path);
      git(work, 'add', '--all');
      git(work, 'commit', '--quiet', '--allow-empty', '-m', message);
      return git(work, 'rev-parse', 'HEAD');
    },
    push(target) {
      git(work, 'push', '--quiet', '--force', 'origin', `HEAD:refs/heads/${target}`);
    },
    async cleanup() {
      await rm(work, { recursive: true, force: true });
    },
  };
}
