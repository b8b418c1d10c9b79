import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, open, readdir, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { ArtefactStoreConfig, S3StoreConfig } from '../ops/config.js';
import { CiError } from '../ops/errors.js';
import { artefactFile, artefactUrl } from '../pipeline/artefactLocation.js';

/** Where a report finds a kept artefact: its artefact_url, and an HTTPS link when one is configured. */
export interface KeptArtefact {
  url: string;
  link: string;
  /** How it was stored, for the job log ("" when it stayed where it was written). */
  how: string;
}

/** Where finished artefacts live: the file they were written to (ARTEFACT_STORE=file) or an S3 bucket. */
export interface ArtefactStore {
  /** Takes a finished artefact file; resolves once a reader can fetch it whole, with what the report names. Stops
   * (and fails) when `signal` aborts: the build was canceled or handed back. */
  keep(path: string, signal?: AbortSignal): Promise<KeptArtefact>;
  /** Removes an artefact a report named (one of a report that does not stand). */
  discard(url: string): Promise<void>;
  /** The artefact a report names, to serve (undefined: not this store's, or gone). */
  open(url: string): Promise<{ body: Readable; bytes: number } | undefined>;
  /** Removes the artefacts stored before `before`; resolves with how many. */
  expire(before: Date): Promise<number>;
}

// Today's behaviour: the artefact stays where the build wrote it, in ARTEFACT_DIR.
function fileStore(artefactDir: string): ArtefactStore {
  const own = (url: string) => {
    const path = artefactFile(url);
    return path && dirname(path) === artefactDir ? path : undefined;
  };
  return {
    keep: async (path) => ({ url: artefactUrl(path), link: '', how: '' }),
    async discard(url) {
      const path = own(url);
      if (path) await rm(path, { force: true });
    },
    async open(url) {
      const path = own(url);
      const info = path ? await stat(path).catch(() => undefined) : undefined;
      return path && info?.isFile() ? { body: createReadStream(path), bytes: info.size } : undefined;
    },
    async expire(before) {
      let removed = 0;
      for (const name of await readdir(artefactDir).catch(() => [] as string[])) {
        if (!name.endsWith('.tar.gz')) continue;
        const path = join(artefactDir, name);
        const info = await lstat(path).catch(() => undefined);
        if (!info?.isFile() || info.mtime >= before) continue;
        await rm(path, { force: true });
        removed += 1;
      }
      return removed;
    },
  };
}

/** How long the S3 client waits to connect at most (S3_TIMEOUT_SEC bounds the rest of a request). */
const CONNECT_TIMEOUT_MS = 10_000;

const md5 = (bytes: Buffer) => createHash('md5').update(bytes).digest('base64');

// An S3 bucket through the AWS SDK (any S3 API: AWS, S3Proxy, MinIO, SeaweedFS). Credentials come from the SDK's
// standard chain (AWS_* variables, or a shared credentials file); they never reach a build or a report.
function s3Store(config: S3StoreConfig): ArtefactStore {
  const client = new S3Client({
    region: config.region,
    ...(config.endpoint ? { endpoint: config.endpoint, forcePathStyle: true } : {}),
    ...(config.credentials ? { credentials: config.credentials } : {}),
    // Each part carries its Content-MD5, which the server checks; the SDK's newer default checksums are not
    // understood by every S3 implementation.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // A server that accepts a connection and never answers fails the request (and the SDK's retries) in bounded time.
    // Idle time, not the whole request: a slow link uploading a large part is not a silent server.
    requestHandler: {
      connectionTimeout: Math.min(CONNECT_TIMEOUT_MS, config.timeoutMs),
      socketTimeout: config.timeoutMs,
    },
  });
  const prefix = `s3://${config.bucket}/`;
  const keyOf = (url: string) => (url.startsWith(prefix) ? url.slice(prefix.length) : undefined);
  const Bucket = config.bucket;

  // One PUT, or a multipart upload of partBytes parts: the object exists only once complete (S3 semantics).
  async function upload(
    path: string,
    Key: string,
    bytes: number,
    abortSignal?: AbortSignal,
  ): Promise<number> {
    const file = await open(path, 'r');
    try {
      const read = async (position: number, length: number) => {
        const buffer = Buffer.alloc(length);
        const { bytesRead } = await file.read(buffer, 0, length, position);
        return buffer.subarray(0, bytesRead);
      };
      if (bytes <= config.partBytes) {
        const body = await read(0, bytes);
        await client.send(new PutObjectCommand({ Bucket, Key, Body: body, ContentMD5: md5(body) }), {
          abortSignal,
        });
        return 1;
      }
      const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket, Key }), {
        abortSignal,
      });
      try {
        const parts: Array<{ ETag: string | undefined; PartNumber: number }> = [];
        for (
          let position = 0, PartNumber = 1;
          position < bytes;
          position += config.partBytes, PartNumber += 1
        ) {
          const body = await read(position, Math.min(config.partBytes, bytes - position));
          const part = { Bucket, Key, UploadId, PartNumber, Body: body, ContentMD5: md5(body) };
          const { ETag } = await client.send(new UploadPartCommand(part), { abortSignal });
          parts.push({ ETag, PartNumber });
        }
        const completion = { Bucket, Key, UploadId, MultipartUpload: { Parts: parts } };
        await client.send(new CompleteMultipartUploadCommand(completion), { abortSignal });
        return parts.length;
      } catch (error) {
        await client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId })).catch(() => undefined);
        throw error;
      }
    } finally {
      await file.close();
    }
  }

  return {
    async keep(path, abortSignal) {
      const Key = `${config.prefix}${basename(path)}`;
      const { size } = await stat(path);
      let parts: number;
      try {
        parts = await upload(path, Key, size, abortSignal);
        const head = await client.send(new HeadObjectCommand({ Bucket, Key }), { abortSignal });
        if (head.ContentLength !== size) throw new Error(`stored ${head.ContentLength} bytes of ${size}`);
      } catch (error) {
        // The build is retried (or reported ERRORED): its local copy is not kept either way.
        await rm(path, { force: true });
        throw new CiError(
          'ARTEFACT_STORE_FAULT',
          `storing the artefact in s3://${Bucket} failed: ${error instanceof Error ? error.message : String(error)}`,
          { retriable: true },
        );
      }
      await rm(path, { force: true });
      const link = config.publicUrl ? `${config.publicUrl.replace(/\/$/, '')}/${Key}` : '';
      const how = parts > 1 ? `${parts} parts of ${config.partBytes / 1024 / 1024} MiB` : 'one request';
      return {
        url: `${prefix}${Key}`,
        link,
        how: `${size} bytes, ${how}, each part's MD5 checked by the server`,
      };
    },
    async discard(url) {
      const Key = keyOf(url);
      if (Key) await client.send(new DeleteObjectCommand({ Bucket, Key }));
    },
    async expire(before) {
      let removed = 0;
      let ContinuationToken: string | undefined;
      do {
        const listing = await client.send(
          new ListObjectsV2Command({ Bucket, Prefix: config.prefix, ContinuationToken }),
        );
        for (const object of listing.Contents ?? []) {
          if (!object.Key || !object.LastModified || object.LastModified >= before) continue;
          await client.send(new DeleteObjectCommand({ Bucket, Key: object.Key }));
          removed += 1;
        }
        ContinuationToken = listing.IsTruncated ? listing.NextContinuationToken : undefined;
      } while (ContinuationToken);
      return removed;
    },
    async open(url) {
      const Key = keyOf(url);
      if (!Key) return undefined;
      const object = await client.send(new GetObjectCommand({ Bucket, Key })).catch(() => undefined);
      if (!object?.Body) return undefined;
      return { body: object.Body as Readable, bytes: object.ContentLength ?? 0 };
    },
  };
}

// The store ARTEFACT_STORE names.
export function createArtefactStore(config: ArtefactStoreConfig, artefactDir: string): ArtefactStore {
  return config.kind === 's3' ? s3Store(config) : fileStore(artefactDir);
}
