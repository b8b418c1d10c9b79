import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './freePort.js';

/** git's own `git http-backend` behind a stock web server, started for a test and stopped by it. */
export interface StockGitServer {
  /** Append a repository's folder name. */
  baseUrl: string;
  /** Stops only the CGI/FastCGI side, when the server has one apart from the web server. */
  stopBackend?(): Promise<void>;
  close(): Promise<void>;
}

async function waitForPort(port: number, child: ChildProcess, log: () => string): Promise<void> {
  for (let i = 0; i < 200; i += 1) {
    if (child.exitCode !== null) throw new Error(`server exited (${child.exitCode}): ${log()}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = new Socket();
      socket.once('connect', () => resolve(true)).once('error', () => resolve(false));
      socket.connect(port, '127.0.0.1');
    }).catch(() => false);
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`server did not listen on ${port}: ${log()}`);
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

function spawnLogged(
  command: string,
  args: string[],
  cwd: string,
): { child: ChildProcess; log: () => string } {
  const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const append = (chunk: Buffer) => {
    output += chunk.toString();
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  return { child, log: () => output.slice(-2000) };
}

// Python's `http.server --cgi`: it hands the CGI script the request body as sent, without de-chunking it, and runs
// scripts as nobody when started by root (so the served tree must be world-readable).
export async function startPythonCgi(served: string): Promise<StockGitServer> {
  const site = await mkdtemp(join(tmpdir(), 'stock-cgi-'));
  await mkdir(join(site, 'cgi-bin'));
  await chmod(site, 0o755);
  await writeFile(
    join(site, 'cgi-bin', 'git'),
    [
      '#!/bin/sh',
      `export GIT_PROJECT_ROOT='${served}' GIT_HTTP_EXPORT_ALL=1`,
      "export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0='*'",
      'exec git http-backend',
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  const port = await freePort();
  const { child, log } = spawnLogged(
    'python3',
    ['-u', '-m', 'http.server', '--cgi', '--bind', '127.0.0.1', String(port)],
    site,
  );
  await waitForPort(port, child, log);
  return {
    baseUrl: `http://127.0.0.1:${port}/cgi-bin/git/`,
    async close() {
      await stop(child);
      await rm(site, { recursive: true, force: true });
    },
  };
}

// Debian's nginx in front of fcgiwrap running `git http-backend`, with basic auth (an htpasswd file), as the git
// documentation's nginx recipe sets it up.
export async function startNginxFcgiwrap(
  served: string,
  auth: { username: string; password: string },
): Promise<StockGitServer> {
  const dir = await mkdtemp(join(tmpdir(), 'nginx-git-'));
  const socket = join(dir, 'fcgiwrap.sock');
  const sha = createHash('sha1').update(auth.password).digest('base64');
  await writeFile(join(dir, 'htpasswd'), `${auth.username}:{SHA}${sha}\n`);
  const port = await freePort();
  const temp = ['client_body', 'fastcgi', 'proxy', 'uwsgi', 'scgi']
    .map((name) => `  ${name}_temp_path ${join(dir, name)};`)
    .join('\n');
  const runAs = process.getuid?.() === 0 ? 'user root;\n' : '';
  await writeFile(
    join(dir, 'nginx.conf'),
    `${runAs}daemon off;
worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')};
events {}
http {
  access_log off;
${temp}
  server {
    listen 127.0.0.1:${port};
    location / {
      auth_basic "git";
      auth_basic_user_file ${join(dir, 'htpasswd')};
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME /usr/lib/git-core/git-http-backend;
      fastcgi_param GIT_PROJECT_ROOT ${served};
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param PATH_INFO $uri;
      fastcgi_param REMOTE_USER $remote_user;
      fastcgi_pass unix:${socket};
    }
  }
}
`,
  );
  const fcgi = spawnLogged('fcgiwrap', ['-s', `unix:${socket}`], dir);
  const nginx = spawnLogged(
    'nginx',
    ['-c', join(dir, 'nginx.conf'), '-p', dir, '-e', join(dir, 'error.log')],
    dir,
  );
  await waitForPort(port, nginx.child, nginx.log);
  return {
    baseUrl: `http://127.0.0.1:${port}/`,
    stopBackend: () => stop(fcgi.child),
    async close() {
      await stop(nginx.child);
      await stop(fcgi.child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
