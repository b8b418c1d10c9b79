import { mkdir, readdir, symlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';

// A worker host's own CACHE_DIR (no git objects, environments or package cache of any repository), sharing only the
// runner's own Python tools with `shared` (a real host has them in its image): its first build of a repository is
// cold, as on a new machine.
export async function hostCacheDir(dir: string, shared: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const tools = resolve(shared, 'tools');
  await mkdir(tools, { recursive: true });
  if (!(await readdir(dir)).includes('tools')) await symlink(tools, join(dir, 'tools'));
  return dir;
}
