import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { toError } from './errors.js';
import type { Logger } from './logger.js';

export interface MetricsServer {
  /** http://host:port of the server (the real port when 0 was asked for). */
  url: string;
  close(): Promise<void>;
}

// Serves /metrics (Prometheus), /healthz (the process answers) and /readyz (its Redis and Kafka are connected).
export async function startMetricsServer(options: {
  host: string;
  port: number;
  registry: Registry;
  ready: () => Promise<Record<string, boolean>>;
  logger: Logger;
}): Promise<MetricsServer> {
  const server: Server = createServer(async (req, res) => {
    try {
      if (req.url === '/metrics') {
        const body = await options.registry.metrics();
        res.writeHead(200, { 'content-type': options.registry.contentType }).end(body);
      } else if (req.url === '/healthz') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      } else if (req.url === '/readyz') {
        const checks = await options.ready();
        const ready = Object.values(checks).every(Boolean);
        res
          .writeHead(ready ? 200 : 503, { 'content-type': 'application/json' })
          .end(JSON.stringify({ ready, checks }));
      } else {
        res.writeHead(404).end();
      }
    } catch (thrown) {
      options.logger.warn({ err: toError(thrown), url: req.url }, 'metrics endpoint failed');
      res.writeHead(500).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${options.host === '0.0.0.0' ? '127.0.0.1' : options.host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
