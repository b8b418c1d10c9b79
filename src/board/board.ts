import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { Queue } from 'bullmq';
import express from 'express';
import { createArtefactStore } from '../delivery/artefactStore.js';
import { type BuildJobData, connectRedis, RETENTION_SECONDS } from '../delivery/queue.js';
import { redisAccess } from '../delivery/redisAccess.js';
import { ReportStore } from '../delivery/reportStore.js';
import type { Config } from '../ops/config.js';
import { ConfigError } from '../ops/errors.js';
import { type Closable, Teardown } from '../ops/lifecycle.js';
import type { Logger } from '../ops/logger.js';
import { BOARD_ARTEFACTS, commitOfDownloadName, downloadName } from '../pipeline/artefactLocation.js';
import { basicAuth } from './boardAuth.js';
import { addVerdictFormatters } from './verdictFormatters.js';

export interface RunningBoard extends Closable {
  url: string;
}

// Refuses to serve the board without credentials, unless bound to 127.0.0.1 with the explicit opt-out.
function credentials(config: Readonly<Config>): { username: string; password: string } | undefined {
  const { username, password, host, allowNoAuth } = config.board;
  if (username && password) return { username, password };
  if (allowNoAuth && host === '127.0.0.1') return undefined;
  throw new ConfigError(
    'BOARD_USERNAME and BOARD_PASSWORD are required (BOARD_ALLOW_NO_AUTH=true is accepted only with BOARD_HOST=127.0.0.1)',
  );
}

// Serves Bull Board for the builds queue (progress, stage logs, retry, clean) and the build artefacts, behind
// basic authentication.
export async function startBoard(config: Readonly<Config>, logger: Logger): Promise<RunningBoard> {
  const auth = credentials(config);
  const teardown = new Teardown(logger);
  try {
    const redis = connectRedis(config.redis);
    teardown.add('redis', async () => void redis.disconnect());
    await redisAccess(redis, config.redis);
    // Its Redis user may be read-only (the secure deployment's board): it does not write the queue's meta.
    const queue = new Queue<BuildJobData>(config.queueName, { connection: redis, skipMetasUpdate: true });
    teardown.add('queue', () => queue.close());
    const serverAdapter = new ExpressAdapter();
    serverAdapter.setBasePath('/');
    const adapter = new BullMQAdapter(queue, { description: 'ci-runner builds: one job per commit' });
    addVerdictFormatters(adapter);
    createBullBoard({
      queues: [adapter],
      serverAdapter,
      options: { uiConfig: { boardTitle: 'ci-runner' } },
    });
    const app = express();
    app.disable('x-powered-by');
    app.get('/healthz', (_req, res) => {
      res.json({ status: 'ok' });
    });
    app.get('/readyz', (_req, res) => {
      const ready = redis.status === 'ready';
      res.status(ready ? 200 : 503).json({ ready, checks: { redis: ready } });
    });
    if (auth) app.use(basicAuth(auth.username, auth.password));
    const store = new ReportStore(redis, config.queueName, RETENTION_SECONDS);
    const artefacts = createArtefactStore(config.artefactStore, config.artefactDir);
    // /artefacts/<sha>.tar.gz is the artefact of the commit's standing report (the file its artefact_url names).
    app.get(`${BOARD_ARTEFACTS}/:file`, async (req, res) => {
      const { file } = req.params;
      const commitSha = typeof file === 'string' ? commitOfDownloadName(file) : undefined;
      const url = commitSha ? (await store.get(commitSha).catch(() => undefined))?.artefactUrl : undefined;
      const artefact = commitSha && url ? await artefacts.open(url).catch(() => undefined) : undefined;
      if (!commitSha || !artefact) {
        res.status(404).type('text').send('no such artefact');
        return;
      }
      res.attachment(downloadName(commitSha));
      res.type('application/gzip');
      res.setHeader('Content-Length', String(artefact.bytes));
      artefact.body.on('error', () => res.destroy());
      artefact.body.pipe(res);
    });
    app.use('/', serverAdapter.getRouter());
    const server: Server = await new Promise((resolve, reject) => {
      const listening = app.listen(config.board.port, config.board.host, () => resolve(listening));
      listening.once('error', reject);
    });
    teardown.add('http server', () => new Promise((resolve) => server.close(() => resolve())));
    const { port } = server.address() as AddressInfo;
    const url = `http://${config.board.host === '0.0.0.0' ? '127.0.0.1' : config.board.host}:${port}`;
    logger.info({ url, auth: auth ? 'basic' : 'none (127.0.0.1 only)' }, 'board started');
    return { url, close: () => teardown.close() };
  } catch (error) {
    await teardown.close();
    throw error;
  }
}
