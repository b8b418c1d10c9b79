import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';

export interface ArtefactEntry {
  type: string;
  content?: string;
  linkname?: string;
}

// Reads a .tar.gz artefact into a map of entry name -> type and (for files) content.
export async function readArtefact(path: string): Promise<Map<string, ArtefactEntry>> {
  const entries = new Map<string, ArtefactEntry>();
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: unknown) => chunks.push(chunk as Buffer));
    stream.on('end', () => {
      const entry: ArtefactEntry = { type: header.type ?? 'file' };
      if (header.type === 'file') entry.content = Buffer.concat(chunks).toString('utf8');
      if (header.linkname) entry.linkname = header.linkname;
      entries.set(header.name, entry);
      next();
    });
    stream.resume();
  });
  await pipeline(createReadStream(path), createGunzip(), extract);
  return entries;
}
