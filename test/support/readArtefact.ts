import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';

export interface ArtefactEntry {
  type: string;
  /** A file's content, when it is at most MAX_CONTENT bytes. */
  content?: string;
  size?: number;
  linkname?: string;
}

/** Larger files (a hostile build's 1 GiB file) are counted, not held in memory. */
const MAX_CONTENT = 64 * 1024 * 1024;

// Reads a .tar.gz artefact into a map of entry name -> type and (for files) content.
export async function readArtefact(path: string): Promise<Map<string, ArtefactEntry>> {
  const entries = new Map<string, ArtefactEntry>();
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (chunk: unknown) => {
      size += (chunk as Buffer).length;
      if (size <= MAX_CONTENT) chunks.push(chunk as Buffer);
    });
    stream.on('end', () => {
      const entry: ArtefactEntry = { type: header.type ?? 'file' };
      if (header.type === 'file') entry.size = size;
      if (header.type === 'file' && size <= MAX_CONTENT)
        entry.content = Buffer.concat(chunks).toString('utf8');
      if (header.linkname) entry.linkname = header.linkname;
      entries.set(header.name, entry);
      next();
    });
    stream.resume();
  });
  await pipeline(createReadStream(path), createGunzip(), extract);
  return entries;
}
