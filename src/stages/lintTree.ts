import { copyFile, lstat, mkdir, readdir, readlink, symlink, utimes } from 'node:fs/promises';
import { extname, join } from 'node:path';

/** What black and ruff read: sources, notebooks, Markdown (ruff 0.17 formats its Python blocks), configuration. */
const LINT_INPUT = new Set(['.py', '.pyi', '.pyw', '.ipynb', '.md', '.toml', '.cfg', '.ini']);
const IGNORE_FILES = new Set(['.gitignore', '.ignore']);

// Copies the checkout's lint inputs into lint's own tree, mtimes kept (they derive from blob ids), symlinks as
// links. Taken before any process of the build ran, from the tree the runner wrote. Returns the files copied.
export async function copyLintTree(src: string, dest: string): Promise<number> {
  await mkdir(dest, { recursive: true });
  const entries = await readdir(src, { withFileTypes: true });
  const counts = await Promise.all(
    entries.map(async (entry) => {
      const from = join(src, entry.name);
      const to = join(dest, entry.name);
      if (entry.isDirectory()) return entry.name === '.git' ? 0 : copyLintTree(from, to);
      if (!LINT_INPUT.has(extname(entry.name)) && !IGNORE_FILES.has(entry.name)) return 0;
      if (entry.isSymbolicLink()) {
        await symlink(await readlink(from), to);
        return 0;
      }
      if (!entry.isFile()) return 0;
      await copyFile(from, to);
      const { mtime } = await lstat(from);
      await utimes(to, mtime, mtime);
      return 1;
    }),
  );
  return counts.reduce((sum, count) => sum + count, 0);
}
