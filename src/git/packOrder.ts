import { link, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/** Packs beyond which an object cache starts afresh (isomorphic-git cannot repack). */
export const MAX_PACKS = 64;

export async function tooManyPacks(gitdir: string): Promise<boolean> {
  const names = await readdir(join(gitdir, 'objects', 'pack')).catch(() => []);
  return names.filter((name) => name.endsWith('.pack')).length > MAX_PACKS;
}

/** A pack renamed into the cache's order of arrival: `pack-<8-digit sequence>-<checksum>`. */
const SEQUENCED = /^pack-(\d{8})-[0-9a-f]{40}\.idx$/;
const RECEIVED = /^pack-[0-9a-f]{40}\.idx$/;

// Names every pack a fetch just wrote after its order of arrival. isomorphic-git reads packs in name order and
// keeps thin packs thin (a delta may have its base in an older pack); once content comes back, a newer pack can hold
// an object as a delta against one whose newest copy is a delta against the first, and the lookup never ends.
// Read oldest first, every object is found in the first pack that had it, whose outside bases are all older:
// every lookup ends. Linked before unlinked, so a concurrent reader always finds a pack.
export async function sequencePacks(gitdir: string): Promise<void> {
  const dir = join(gitdir, 'objects', 'pack');
  const names = await readdir(dir).catch(() => [] as string[]);
  let next = Math.max(0, ...names.map((name) => Number(SEQUENCED.exec(name)?.[1] ?? -1) + 1));
  for (const idx of names.filter((name) => RECEIVED.test(name))) {
    const stem = idx.slice('pack-'.length, -'.idx'.length);
    const renamed = `pack-${String(next).padStart(8, '0')}-${stem}`;
    next += 1;
    await link(join(dir, `pack-${stem}.pack`), join(dir, `${renamed}.pack`));
    await link(join(dir, idx), join(dir, `${renamed}.idx`));
    await unlink(join(dir, idx));
    await unlink(join(dir, `pack-${stem}.pack`));
  }
}

// A cache from before packs were sequenced holds packs in no order: it starts afresh.
export async function unsequencedPacks(gitdir: string): Promise<boolean> {
  const names = await readdir(join(gitdir, 'objects', 'pack')).catch(() => [] as string[]);
  return names.some((name) => RECEIVED.test(name));
}
