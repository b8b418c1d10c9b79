import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export type Files = Record<string, string>;

/** A real git repository made by a test: a working clone that pushes to a bare repo the git server serves. */
export interface FixtureRepo {
  url: string;
  commit(files: Files, message: string, remove?: string[], links?: Array<[string, string]>): Promise<string>;
  /** Commits a whole directory tree as it is (binary files, modes), on top of what the work tree holds. */
  commitDir(dir: string, message: string): string;
  /** Moves the work tree's branch back to an earlier commit (to rewrite history before a force push). */
  resetTo(sha: string): void;
  push(branch: string): void;
  /** Runs git in the work tree (plumbing for trees no work tree could hold), with optional standard input. */
  git(args: string[], input?: string): string;
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

let lastCommitSecond = 0;

// Commits in one second with the same tree, message and parent get the same sha, even in two repositories (a test's
// "new" commit would then be an earlier test's, already built). Each commit of this process gets its own second.
function commitGit(cwd: string, ...args: string[]): string {
  lastCommitSecond = Math.max(Math.floor(Date.now() / 1000), lastCommitSecond + 1);
  const date = `${lastCommitSecond} +0000`;
  const env = { ...GIT_ENV, GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date };
  execFileSync('git', ['commit', ...args], { cwd, env, encoding: 'utf8' });
  return git(cwd, 'rev-parse', 'HEAD');
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
    async commit(files, message, remove = [], links = []) {
      for (const [path, content] of Object.entries(files)) {
        await mkdir(dirname(join(work, path)), { recursive: true });
        // Scripts (a #! first line) are committed executable, as a developer would.
        await writeFile(join(work, path), content);
        await chmod(join(work, path), content.startsWith('#!') ? 0o755 : 0o644);
      }
      for (const path of remove) git(work, 'rm', '--quiet', path);
      for (const [path, target] of links) await symlink(target, join(work, path));
      git(work, 'add', '--all');
      return commitGit(work, '--quiet', '--allow-empty', '-m', message);
    },
    commitDir(dir, message) {
      execFileSync('cp', ['-R', '--preserve=mode', `${dir}/.`, work]);
      git(work, 'add', '--all', '--force');
      return commitGit(work, '--quiet', '--allow-empty', '-m', message);
    },
    resetTo(sha) {
      git(work, 'reset', '--quiet', '--hard', sha);
    },
    push(target) {
      git(work, 'push', '--quiet', '--force', 'origin', `HEAD:refs/heads/${target}`);
    },
    git(args, input) {
      return execFileSync('git', args, { cwd: work, env: GIT_ENV, input, encoding: 'utf8' }).trim();
    },
    async cleanup() {
      await rm(work, { recursive: true, force: true });
    },
  };
}

// Main at `kept`; `feature` pushed at `lost`, then rewritten and force-pushed to `replaced` (lost is unreachable).
export async function forcePushFeature(
  repo: FixtureRepo,
): Promise<{ kept: string; lost: string; replaced: string }> {
  const kept = await repo.commit({ 'v.txt': 'kept\n' }, 'kept');
  repo.push('main');
  const lost = await repo.commit({ 'v.txt': 'lost\n' }, 'lost');
  repo.push('feature');
  repo.resetTo(kept);
  const replaced = await repo.commit({ 'v.txt': 'replaced\n' }, 'replaced');
  repo.push('feature');
  return { kept, lost, replaced };
}
