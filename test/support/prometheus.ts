import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from './freePort.js';

/** A real Prometheus (Debian's) scraping ci-runner parts every second with the shipped alert rules loaded. */
export interface Prometheus {
  url: string;
  /** An instant query's result vector. */
  query(expr: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>>;
  /** Alerts in the given state (pending or firing). */
  alerts(): Promise<Array<{ labels: Record<string, string>; state: string }>>;
  close(): Promise<void>;
}

const RULES = resolve(import.meta.dirname, '../../deploy/prometheus-alerts.yml');

// Starts Prometheus on loopback scraping each target (job name -> host:port) every second, evaluating the shipped
// alert rules every second.
export async function startPrometheus(targets: Record<string, string>): Promise<Prometheus> {
  const dir = await mkdtemp(join(tmpdir(), 'prometheus-'));
  const scrapes = Object.entries(targets).map(
    ([job, target]) =>
      `  - job_name: ${job}\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['${target}']`,
  );
  const config = [
    'global:',
    '  scrape_interval: 1s',
    '  evaluation_interval: 1s',
    'rule_files:',
    `  - ${RULES}`,
    'scrape_configs:',
    ...scrapes,
    '',
  ].join('\n');
  await writeFile(join(dir, 'prometheus.yml'), config);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(
    'prometheus',
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const api = async <T>(path: string): Promise<T> => {
    const response = await fetch(`${url}${path}`);
    const body = (await response.json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`prometheus ${path}: ${body.error}`);
    return body.data;
  };
  for (let waited = 0; ; waited += 200) {
    if (child.exitCode !== null) throw new Error(`prometheus exited: ${stderr}`);
    const ready = await fetch(`${url}/-/ready`).then(
      (response) => response.ok,
      () => false,
    );
    if (ready) break;
    if (waited > 30_000) throw new Error(`prometheus not ready after 30 s: ${stderr}`);
    await new Promise((done) => setTimeout(done, 200));
  }
  return {
    url,
    query: async (expr) =>
      (
        await api<{ result: Array<{ metric: Record<string, string>; value: [number, string] }> }>(
          `/api/v1/query?query=${encodeURIComponent(expr)}`,
        )
      ).result,
    alerts: async () =>
      (await api<{ alerts: Array<{ labels: Record<string, string>; state: string }> }>('/api/v1/alerts'))
        .alerts,
    async close() {
      if (child.exitCode === null) {
        const exited = new Promise((done) => child.once('exit', done));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
