import { chmod, rm } from 'node:fs/promises';
import { Agent, createServer, type IncomingMessage, request, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { EgressPolicy } from './egressPolicy.js';

/** One build's egress proxy: an HTTP CONNECT (and plain HTTP) proxy on a Unix socket only its sandbox sees. */
export interface EgressProxy {
  socketPath: string;
  /** Connections refused since the last call: the first ones with host:port and why, and how many in all. */
  takeRefusals(): EgressRefusals;
  close(): Promise<void>;
}

/** Refused connections: the first MAX_REFUSALS listed, and the count of all. */
export interface EgressRefusals {
  listed: Array<{ target: string; reason: string }>;
  total: number;
}

/** Connections a build may hold open at once through its proxy (tunnels and plain-HTTP requests together). */
const MAX_CONNECTIONS = 128;
/** Refusals kept per stage (each destination once): a build asking for millions keeps the worker's memory. */
const MAX_REFUSALS = 100;
/** A host name (RFC 1035) or an address: anything longer or stranger is refused before any policy or lookup. */
const HOST = /^(\[[0-9a-f:.]{2,45}\]|[a-z0-9_.-]{1,253})$/i;
/** Headers for one hop only, never forwarded upstream. */
const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'te',
  'trailer',
  'upgrade',
];
const CONNECT_TIMEOUT_MS = 20_000;
const IDLE_TIMEOUT_MS = 300_000;

// `host:port` of a CONNECT request (IPv6 in brackets), or undefined.
function connectTarget(url: string | undefined): { host: string; port: number } | undefined {
  const match = /^([^:[\]/\s]+|\[[0-9a-fA-F:.]+\]):(\d{1,5})$/.exec(url ?? '');
  const port = Number(match?.[2]);
  if (!match?.[1] || !HOST.test(match[1]) || !(port >= 1 && port <= 65_535)) return undefined;
  return { host: match[1], port };
}

// Connects to the first address that answers, within the connect timeout.
async function dial(addresses: string[], port: number): Promise<Socket> {
  let last: unknown;
  for (const address of addresses) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const socket = connect({ host: address, port, timeout: CONNECT_TIMEOUT_MS, noDelay: true });
        socket.once('connect', () => {
          socket.setTimeout(IDLE_TIMEOUT_MS);
          resolve(socket);
        });
        socket.once('timeout', () => socket.destroy(new Error(`${address}:${port} did not answer`)));
        socket.once('error', reject);
      });
    } catch (error) {
      last = error;
    }
  }
  throw last ?? new Error('no address');
}

function refuse(client: Duplex, status: string, text: string): void {
  client.end(`HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n${text}\n`);
}

// Opens the proxy on `socketPath` (readable and writable by the build's user through the sandbox's bind).
export async function openEgressProxy(policy: EgressPolicy, socketPath: string): Promise<EgressProxy> {
  let refusals: Array<{ target: string; reason: string }> = [];
  let total = 0;
  let open = 0;
  // Its own upstream sockets: bounded, never kept alive or shared with another build's proxy.
  const agent = new Agent({ keepAlive: false, maxSockets: 16, maxTotalSockets: 32 });
  const sockets = new Set<Duplex>();
  const track = (socket: Duplex) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  };
  const decide = async (host: string, port: number) => {
    const decision = await policy.decide(host, port);
    if ('refused' in decision) {
      total += 1;
      if (refusals.length < MAX_REFUSALS)
        refusals.push({ target: `${host}:${port}`, reason: decision.refused });
    }
    return decision;
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    // One request per connection, so pipelining cannot multiply a connection into many upstream requests.
    res.shouldKeepAlive = false;
    void plainHttp(req, res);
  });
  server.maxRequestsPerSocket = 1;
  server.on('connect', (req: IncomingMessage, client: Duplex, head: Buffer) => {
    track(client);
    client.on('error', () => client.destroy());
    void tunnel(req, client, head);
  });
  server.on('connection', (socket: Socket) => {
    if (open >= MAX_CONNECTIONS) {
      socket.destroy();
      return;
    }
    open += 1;
    track(socket);
    socket.once('close', () => {
      open -= 1;
    });
  });

  async function tunnel(req: IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
    const target = connectTarget(req.url);
    if (!target) return refuse(client, '400 Bad Request', 'CONNECT needs host:port');
    const decision = await decide(target.host, target.port);
    if ('refused' in decision)
      return refuse(client, '403 Forbidden', `ci-runner egress refused ${req.url}: ${decision.refused}`);
    let upstream: Socket;
    try {
      upstream = await dial(decision.addresses, target.port);
    } catch (error) {
      return refuse(client, '502 Bad Gateway', `ci-runner egress: ${String(error)}`);
    }
    // The build may have hung up while the proxy dialled: nothing to keep open for it.
    if (client.destroyed) {
      upstream.destroy();
      return;
    }
    track(upstream);
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length) upstream.write(head);
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  }

  // A plain-HTTP request in proxy form (`GET http://host/path`), for an index served over HTTP.
  async function plainHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = URL.canParse(req.url ?? '') ? new URL(req.url ?? '') : undefined;
    if (url?.protocol !== 'http:' || !HOST.test(url.hostname)) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('a proxy request needs an http:// URL\n');
      return;
    }
    const port = Number(url.port) || 80;
    const decision = await decide(url.hostname, port);
    if ('refused' in decision) {
      res
        .writeHead(403, { 'content-type': 'text/plain' })
        .end(`ci-runner egress refused ${url.hostname}:${port}: ${decision.refused}\n`);
      return;
    }
    const headers: Record<string, string | string[] | undefined> = { ...req.headers, host: url.host };
    for (const name of HOP_BY_HOP) delete headers[name];
    const upstream = request(
      {
        host: decision.addresses[0],
        port,
        method: req.method,
        path: `${url.pathname}${url.search}`,
        headers,
        agent,
        timeout: CONNECT_TIMEOUT_MS,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('timeout', () => upstream.destroy(new Error('no answer')));
    upstream.on('error', (error) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`ci-runner egress: ${String(error)}\n`);
    });
    req.pipe(upstream);
  }

  await rm(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  await chmod(socketPath, 0o666);
  return {
    socketPath,
    takeRefusals() {
      const taken = { listed: refusals, total };
      refusals = [];
      total = 0;
      return taken;
    },
    async close() {
      agent.destroy();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(socketPath, { force: true });
    },
  };
}
