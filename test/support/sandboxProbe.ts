// Runs shell commands in a real build sandbox and prints what they said as JSON: run by the sandbox tests as root
// and, through setpriv, as an unprivileged user (the Docker image's case). Usage: sandboxProbe.ts <dir> <json>.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runBounded } from '../../src/host/runBounded.js';
import { egressConfig } from '../../src/ops/egressConfig.js';
import { createLogger } from '../../src/ops/logger.js';
import { buildEnv, buildLayout, prepareLayout } from '../../src/pipeline/layout.js';
import { openBuildSandbox, type SandboxAccess } from '../../src/sandbox/buildSandbox.js';
import { prepareSandbox } from '../../src/sandbox/sandboxHost.js';

interface Probe {
  commands: Array<{ script: string; access?: SandboxAccess }>;
  /** BUILD_EGRESS and its allow-list, as a runner's environment would set them. */
  egress?: Record<string, string>;
  resources?: {
    memoryMb: number;
    diskMb: number;
    maxProcesses: number;
    fileSizeMb: number;
    openFiles: number;
    cpuSec: number;
  };
}

const [dir = '', json = '{}'] = process.argv.slice(2);
const probe = JSON.parse(json) as Probe;
const logger = createLogger({ level: 'warn', pretty: false, name: 'probe' });
const tools = join(dir, 'tools');
await mkdir(tools, { recursive: true });
const host = await prepareSandbox(
  {
    enabled: true,
    uidBase: 800_000,
    hostPath: '/usr/local/bin:/usr/bin:/bin',
    readOnly: [],
    tools,
    python: '/usr/bin/python3',
    egress: egressConfig(probe.egress ?? {}),
  },
  logger,
);
// Named per probe: two probes at once must not share a cgroup name.
const layout = buildLayout(join(dir, `build-${process.pid}`), {}, true);
await prepareLayout(layout);
await mkdir(layout.src);
await writeFile(join(layout.src, 'hello.txt'), 'hello\n');
const resources = probe.resources ?? {
  memoryMb: 512,
  maxProcesses: 64,
  fileSizeMb: 8,
  diskMb: 256,
  openFiles: 256,
  cpuSec: 60,
};
const sandbox = await openBuildSandbox(host, layout, resources);
await sandbox.handOver([layout.src, layout.out, layout.home, layout.tmp]);
const results = [];
for (const command of probe.commands) {
  const result = await runBounded('/bin/sh', ['-c', command.script], {
    cwd: layout.inside.src,
    env: { ...buildEnv(layout), ...(command.access?.network ? sandbox.egressEnv() : {}) },
    timeoutMs: 60_000,
    signal: new AbortController().signal,
    launch: sandbox.launch(command.access ?? {}),
  });
  results.push({ ...result, events: await sandbox.limitEvents() });
}
results.push({ description: sandbox.description() });
await sandbox.close();
process.stdout.write(JSON.stringify(results));
