import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ProjectEnvironment, PromoteInput } from './projectEnvironment.js';

/** What an editable install may leave in the checkout without making its environment per-build. */
const INSTALL_LEFTOVERS = /(^|\/)([^/]+\.egg-info|__pycache__|build|\.pdm-build)(\/|$)/;
const MAX_TREE_ENTRIES = 200_000;

class TreeTooBig extends Error {}

// Every entry under a checkout (relative paths), symlinks never followed (the build may have made them), at most
// MAX_TREE_ENTRIES (a bigger tree is never shared).
export async function treeFiles(dir: string, within = '', into = new Set<string>()): Promise<Set<string>> {
  for (const entry of await readdir(join(dir, within), { withFileTypes: true })) {
    const path = within ? `${within}/${entry.name}` : entry.name;
    if (into.size >= MAX_TREE_ENTRIES) throw new TreeTooBig();
    into.add(path);
    if (entry.isDirectory() && !entry.isSymbolicLink()) await treeFiles(dir, path, into);
  }
  return into;
}

// After a build installed its project, makes its environment the key's shared one, unless the install left files
// in the checkout (an extension module, a generated version file) that a later checkout would not have. `before`
// is the checkout's entries before the install.
export async function shareProjectEnvironment(
  project: ProjectEnvironment,
  before: Set<string>,
  input: Omit<PromoteInput, 'inCommit'> & { log: (line: string) => void },
): Promise<void> {
  if (await project.unshareable()) return;
  const keep = async (reason: string) => {
    input.log(`environment stays per build: ${reason}`);
    await project.markUnshareable(reason);
  };
  const after = await treeFiles(input.srcHost).catch(() => undefined);
  if (!after) return keep(`the checkout holds over ${MAX_TREE_ENTRIES} entries after the install`);
  const made = [...after].filter((path) => !before.has(path) && !INSTALL_LEFTOVERS.test(path));
  if (made.length > 0) {
    const listed = `${made.slice(0, 3).join(', ')}${made.length > 3 ? ', …' : ''}`;
    return keep(`installing the project wrote ${listed} into the checkout`);
  }
  const { log, ...promote } = input;
  const why = await project.promote({ ...promote, inCommit: (path) => path === '' || before.has(path) }, log);
  if (why) await keep(why);
}
