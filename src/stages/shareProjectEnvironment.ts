import { TreeTooLargeError, walkBeneath } from '../host/beneath.js';
import type { ProjectEnvironment, PromoteInput } from './projectEnvironment.js';

/** What an editable install may leave in the checkout without making its environment per-build. */
const INSTALL_LEFTOVERS = /(^|\/)([^/]+\.egg-info|__pycache__|build|\.pdm-build)(\/|$)/;
const MAX_TREE_ENTRIES = 200_000;
/** Directories deeper than this in a checkout after its install: never shared (and never walked further). */
const MAX_TREE_DEPTH = 256;

// Every entry under a checkout (relative paths), walked by descriptor so a link the build made is never followed, at
// most MAX_TREE_ENTRIES (a bigger tree is never shared: TreeTooLargeError).
export async function treeFiles(dir: string): Promise<Set<string>> {
  const found = new Set<string>();
  await walkBeneath(
    dir,
    async (entry) => {
      if (entry.depth > MAX_TREE_DEPTH)
        throw new TreeTooLargeError(`deeper than ${MAX_TREE_DEPTH} directories`);
      found.add(entry.path);
    },
    { maxEntries: MAX_TREE_ENTRIES, maxDepth: Number.MAX_SAFE_INTEGER },
  );
  return found;
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
