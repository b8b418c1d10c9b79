import { open, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inflateSync, constants as zlib } from 'node:zlib';

/** The size of an object in a git object store, read from its header only (never the object itself). */
export type ObjectSizes = (oid: string) => Promise<number | undefined>;

const HEADER_BYTES = 512;

interface PackIndex {
  pack: string;
  idx: Buffer;
  count: number;
}

// Parses a version 2 pack index's header (magic \377tOc, version 2); other versions are not used by the cache.
function packIndex(pack: string, idx: Buffer): PackIndex | undefined {
  if (idx.length < 8 + 256 * 4 || idx.readUInt32BE(0) !== 0xff744f63 || idx.readUInt32BE(4) !== 2)
    return undefined;
  return { pack, idx, count: idx.readUInt32BE(8 + 255 * 4) };
}

// The offset of an object in a pack, by binary search of the index's sorted names.
function offsetIn(index: PackIndex, oid: Buffer): number | undefined {
  const { idx, count } = index;
  const first = oid[0] as number;
  let low = first === 0 ? 0 : idx.readUInt32BE(8 + (first - 1) * 4);
  let high = idx.readUInt32BE(8 + first * 4);
  const names = 8 + 256 * 4;
  while (low < high) {
    const middle = (low + high) >>> 1;
    const order = idx.compare(oid, 0, 20, names + middle * 20, names + middle * 20 + 20);
    if (order === 0) {
      const offsets = names + count * 24;
      const small = idx.readUInt32BE(offsets + middle * 4);
      if ((small & 0x80000000) === 0) return small;
      return Number(idx.readBigUInt64BE(offsets + count * 4 + (small & 0x7fffffff) * 8));
    }
    if (order > 0) high = middle;
    else low = middle + 1;
  }
  return undefined;
}

// Reads a little-endian base-128 number (git's size encoding) from bytes at `at`.
function varint(bytes: Buffer, at: number): { value: number; next: number } | undefined {
  let value = 0;
  let scale = 1;
  for (let i = at; i < bytes.length; i += 1) {
    const byte = bytes[i] as number;
    value += (byte & 0x7f) * scale;
    scale *= 128;
    if ((byte & 0x80) === 0) return { value, next: i + 1 };
  }
  return undefined;
}

// The first bytes of a zlib stream, inflated as far as the prefix allows.
function inflatePrefix(bytes: Buffer): Buffer | undefined {
  try {
    return inflateSync(bytes, { finishFlush: zlib.Z_SYNC_FLUSH, maxOutputLength: 1024 * 1024 });
  } catch {
    return undefined;
  }
}

// The first HEADER_BYTES of a file at `offset`.
async function readPrefix(path: string, offset = 0): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const bytes = Buffer.alloc(HEADER_BYTES);
    const { bytesRead } = await handle.read(bytes, 0, HEADER_BYTES, offset);
    return bytes.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

// An object's size from its pack entry: the header's size for a whole object, the delta's result size for a delta.
async function sizeInPack(pack: string, offset: number): Promise<number | undefined> {
  const bytes = await readPrefix(pack, offset);
  let at = 0;
  let byte = bytes[at++] as number;
  const type = (byte >> 4) & 7;
  let size = byte & 15;
  let scale = 16;
  while (byte & 0x80) {
    byte = bytes[at++] as number;
    size += (byte & 0x7f) * scale;
    scale *= 128;
  }
  if (type >= 1 && type <= 4) return size;
  if (type === 6) {
    while ((bytes[at++] as number) & 0x80) {}
  } else if (type === 7) at += 20;
  else return undefined;
  const delta = inflatePrefix(bytes.subarray(at));
  const base = delta && varint(delta, 0);
  return base && delta ? varint(delta, base.next)?.value : undefined;
}

// Object sizes of one object store, from loose object headers and pack entry headers: a blob of gigabytes is
// measured by reading a few hundred bytes. Undefined for an object it cannot place.
export function objectSizes(gitdir: string): ObjectSizes {
  let indexes: Promise<PackIndex[]> | undefined;
  const loadIndexes = async () => {
    const dir = join(gitdir, 'objects', 'pack');
    const names = (await readdir(dir).catch(() => [] as string[])).filter((name) => name.endsWith('.idx'));
    const found: PackIndex[] = [];
    for (const name of names.sort()) {
      const idx = await readFile(join(dir, name)).catch(() => undefined);
      const index = idx && packIndex(join(dir, name.replace(/\.idx$/, '.pack')), idx);
      if (index) found.push(index);
    }
    return found;
  };
  return async (oid) => {
    const loose = join(gitdir, 'objects', oid.slice(0, 2), oid.slice(2));
    const head = await readPrefix(loose)
      .then(inflatePrefix)
      .catch(() => undefined);
    const match = head && /^[a-z]+ (\d+)\0/.exec(head.subarray(0, 64).toString('latin1'));
    if (match) return Number(match[1]);
    indexes ??= loadIndexes();
    const name = Buffer.from(oid, 'hex');
    for (const index of await indexes) {
      const offset = offsetIn(index, name);
      if (offset !== undefined) return sizeInPack(index.pack, offset);
    }
    return undefined;
  };
}
