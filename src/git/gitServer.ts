import { execFile, spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { SYSTEM_PATH } from '../host/systemPath.js';

export interface GitServer {
  /** http://127.0.0.1:<port>/ — append a repository's folder name. */
  baseUrl: string;
  close(): Promise<void>;
}

export interface GitServerOptions {
  /** Where to find git (the host's PATH). */
  path?: string;
  /** When set, every request needs these basic-auth credentials. */
  auth?: { username: string; password: string };
  /** Sends only commits that are a ref's tip, as servers without uploadpack.allowReachableSHA1InWant do. */
  tipsOnly?: boolean;
  /** Serves only the repository in this folder of root (404 for every other path). */
  only?: string;
  /** Where to listen; default 127.0.0.1 on a free port. */
  host?: string;
  port?: number;
  /** A path prefix that answers 301 to the same path without it (a repository that moved). */
  movedFrom?: string;
}

const pktLine = (text: string) => `${(text.length + 4).toString(16).padStart(4, '0')}${text}`;

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

// The first want of an upload-pack request that is not a ref's tip, if any.
async function untippedWant(root: string, pathInfo: string, body: Buffer): Promise<string | undefined> {
  const wants = [...body.toString('latin1').matchAll(/want ([0-9a-f]{40})/g)].map((match) => match[1]);
  if (wants.length === 0) return undefined;
  const repo = join(root, pathInfo.replace(/\/git-upload-pack$/, ''));
  const { stdout } = await promisify(execFile)('git', ['for-each-ref', '--format=%(objectname)'], {
    cwd: repo,
  });
  const tips = new Set(stdout.split('\n'));
  return wants.find((want) => !tips.has(want as string));
}

function refuse(res: ServerResponse, want: string): void {
  res.writeHead(200, { 'Content-Type': 'application/x-git-upload-pack-result' });
  res.end(pktLine(`ERR upload-pack: not our ref ${want}`));
}

// Serves every bare repository under root over git's smart HTTP protocol via `git http-backend` (CGI).
export async function startGitServer(root: string, options: GitServerOptions = {}): Promise<GitServer> {
  const expected = options.auth
    ? `Basic ${Buffer.from(`${options.auth.username}:${options.auth.password}`).toString('base64')}`
    : undefined;
  const server: Server = createServer((req, res) => {
    if (expected && req.headers.authorization !== expected) {
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="git"' });
      res.end();
      return;
    }
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (options.movedFrom && url.pathname.startsWith(options.movedFrom)) {
      res.writeHead(301, { Location: `/${url.pathname.slice(options.movedFrom.length)}${url.search}` });
      res.end();
      return;
    }
    const pathInfo = decodeURIComponent(url.pathname);
    const outside = options.only !== undefined && !pathInfo.startsWith(`/${options.only}/`);
    if (outside || pathInfo.split('/').includes('..')) {
      res.writeHead(outside ? 404 : 400);
      res.end();
      return;
    }
    if (options.tipsOnly && req.method === 'POST' && pathInfo.endsWith('/git-upload-pack')) {
      void readBody(req)
        .then(async (body) => {
          const want = await untippedWant(root, pathInfo, body);
          if (want) refuse(res, want);
          else serve(req, res, url, body);
        })
        .catch(() => res.destroy());
      return;
    }
    serve(req, res, url);
  });

  const serve = (req: IncomingMessage, res: ServerResponse, url: URL, body?: Buffer) => {
    const backend = spawn('git', ['http-backend'], {
      env: {
        PATH: options.path ?? SYSTEM_PATH,
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: '1',
        GIT_CONFIG_COUNT: '1',
        GIT_CONFIG_KEY_0: 'uploadpack.allowReachableSHA1InWant',
        GIT_CONFIG_VALUE_0: 'true',
        REQUEST_METHOD: req.method ?? 'GET',
        PATH_INFO: decodeURIComponent(url.pathname),
        ...(body ? { CONTENT_LENGTH: String(body.length) } : {}),
        QUERY_STRING: url.search.slice(1),
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        HTTP_CONTENT_ENCODING: req.headers['content-encoding'] ?? '',
        GIT_PROTOCOL: String(req.headers['git-protocol'] ?? ''),
        REMOTE_ADDR: '127.0.0.1',
      },
    });
    if (body) backend.stdin.end(body);
    else req.pipe(backend.stdin);
    let head = Buffer.alloc(0);
    let headersSent = false;
    backend.stdout.on('data', (chunk: Buffer) => {
      if (headersSent) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      let status = 200;
      for (const line of head.subarray(0, end).toString('utf8').split('\r\n')) {
        const colon = line.indexOf(':');
        const name = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10);
        else res.setHeader(name, value);
      }
      res.writeHead(status);
      headersSent = true;
      res.write(head.subarray(end + 4));
    });
    backend.on('close', () => {
      if (!headersSent) res.writeHead(502);
      res.end();
    });
    backend.on('error', () => res.destroy());
  };
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://${host.includes(':') ? `[${host}]` : host}:${port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
