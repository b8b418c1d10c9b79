import { access, constants, lstat, readlink } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { LAUNCH_FDS, runBounded } from '../host/runBounded.js';
import type { SandboxConfig } from '../ops/config.js';
import type { EgressConfig } from '../ops/egressConfig.js';
import { ConfigError } from '../ops/errors.js';
import type { Logger } from '../ops/logger.js';
import { type BwrapPlan, bwrapArgs, type SandboxMount } from './bwrapArgs.js';
import { type Cgroups, detectCgroups } from './cgroups.js';
import { behindForwarder, FORWARDER_MOUNT } from './egressForwarder.js';
import { seccompFilter } from './seccompFilter.js';

/** What the host offers every build's sandbox, found once when a worker (or `ci-runner build`) starts. */
export interface SandboxHost {
  enabled: true;
  bwrap: string;
  /** User-mode networking, needed only for BUILD_EGRESS=internet. */
  slirp?: string;
  prlimit: string;
  setpriv: string;
  /** Started as root: builds drop to a per-build unprivileged uid. Otherwise they keep the runner's uid. */
  privileged: boolean;
  uidBase: number;
  cgroups: Cgroups;
  system: SandboxMount[];
  symlinks: Array<{ target: string; link: string }>;
  /** The runner's tools directory on the host (seen at TOOLS_PATH). */
  tools: string;
  /** The build interpreter (seen at its own path), which runs the egress forwarder. */
  python: string;
  /** What installs may reach. */
  egress: EgressConfig;
  /** The seccomp filter every sandboxed process runs under, and what it does (or why there is none). */
  seccomp?: Buffer;
  seccompNote: string;
}

/** SANDBOX=off: an operator's explicit, logged choice to run builds with the runner's own powers. */
export interface NoSandbox {
  enabled: false;
}

/** Top-level system paths a build may read (never /root, /home, /var, /run, /srv, /opt, /mnt, /media). */
const SYSTEM_DIRS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];
/** What of /etc programs need: TLS trust, name service, dynamic linker, time zone, MIME types. No passwd. */
const ETC_ENTRIES = [
  'alternatives',
  'ca-certificates',
  'ca-certificates.conf',
  'debian_version',
  'gai.conf',
  'host.conf',
  'hosts',
  'ld.so.cache',
  'ld.so.conf',
  'ld.so.conf.d',
  'localtime',
  'mime.types',
  'nsswitch.conf',
  'os-release',
  'pki',
  'protocols',
  'python3',
  'services',
  'ssl',
  'timezone',
];

async function findOnPath(name: string, path: string): Promise<string | undefined> {
  for (const dir of path.split(delimiter).filter(Boolean)) {
    const candidate = join(dir, name);
    if (
      await access(candidate, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return candidate;
  }
  return undefined;
}

async function systemMounts(extraReadOnly: string[]): Promise<Pick<SandboxHost, 'system' | 'symlinks'>> {
  const system: SandboxMount[] = [];
  const symlinks: SandboxHost['symlinks'] = [];
  for (const dir of SYSTEM_DIRS) {
    const stat = await lstat(dir).catch(() => undefined);
    if (stat?.isSymbolicLink()) symlinks.push({ target: await readlink(dir), link: dir });
    else if (stat?.isDirectory()) system.push({ source: dir, target: dir });
  }
  for (const entry of ETC_ENTRIES) {
    const path = join('/etc', entry);
    if (await lstat(path).catch(() => undefined)) system.push({ source: path, target: path });
  }
  const covered = (path: string) => system.some((m) => path === m.target || path.startsWith(`${m.target}/`));
  for (const path of extraReadOnly) if (!covered(path)) system.push({ source: path, target: path });
  return { system, symlinks };
}

export interface SandboxRequest {
  enabled: boolean;
  uidBase: number;
  hostPath: string;
  /** Host paths every sandbox reads at the same path: the build interpreter's installation. */
  readOnly: string[];
  /** The runner's tools directory, which every sandbox reads at TOOLS_PATH. */
  tools: string;
  /** The build interpreter (visible through readOnly). */
  python: string;
  egress: EgressConfig;
}

/** Where the runner's tools appear inside every sandbox (not at their host path, which names the cache). */
export const TOOLS_PATH = '/ci/tools';

// Finds bubblewrap, slirp4netns (for BUILD_EGRESS=internet) and the cgroups this host offers, and proves a sandbox starts. Fails closed: when
// anything is missing the error names it and how to fix it (or, explicitly, SANDBOX=off).
export async function prepareSandbox(
  request: SandboxRequest,
  logger: Logger,
): Promise<SandboxHost | NoSandbox> {
  if (!request.enabled) {
    logger.warn(
      "SANDBOX=off: builds run UNSANDBOXED with this runner's user, network and files; every report says so",
    );
    return { enabled: false };
  }
  const tools = {
    bwrap: 'bubblewrap',
    ...(request.egress.mode === 'internet' ? { slirp4netns: 'slirp4netns' } : {}),
    prlimit: 'util-linux',
    setpriv: 'util-linux',
  };
  const found: Record<string, string> = {};
  for (const [tool, pkg] of Object.entries(tools)) {
    const path = await findOnPath(tool, request.hostPath);
    if (!path) {
      const why = tool === 'slirp4netns' ? ' for BUILD_EGRESS=internet' : '';
      throw new ConfigError(
        `the build sandbox needs ${tool} (Debian package ${pkg})${why}, which is not on PATH; install it, or set SANDBOX=off to run builds unsandboxed (unsafe)`,
      );
    }
    found[tool] = path;
  }
  const filter = seccompFilter();
  const host: SandboxHost = {
    enabled: true,
    bwrap: found.bwrap as string,
    slirp: found.slirp4netns,
    prlimit: found.prlimit as string,
    setpriv: found.setpriv as string,
    privileged: process.getuid?.() === 0,
    uidBase: request.uidBase,
    cgroups: await detectCgroups(),
    tools: request.tools,
    python: request.python,
    egress: request.egress,
    ...('program' in filter
      ? {
          seccomp: filter.program,
          seccompNote: `seccomp: ${filter.denied} syscalls denied, no new user namespaces`,
        }
      : { seccompNote: `NO seccomp filter (${filter.unsupported})` }),
    ...(await systemMounts(request.readOnly)),
  };
  host.system.push({ source: request.tools, target: TOOLS_PATH });
  await proveSandbox(host, request.hostPath);
  logger.info(
    { privileged: host.privileged, cgroups: host.cgroups.description },
    host.privileged
      ? 'build sandbox ready: builds run as unprivileged per-build users'
      : "build sandbox ready: builds run in user namespaces as this runner's user",
  );
  return host;
}

// Starts one trivial sandbox the way builds start (hand-shake, seccomp filter, started byte), so a host that refuses
// user namespaces, bwrap or the filter stops the runner at start-up.
async function proveSandbox(host: SandboxHost, hostPath: string): Promise<void> {
  // With the egress proxy, installs start behind the forwarder: proved here too (its interpreter, its port).
  const forwarded = host.egress.mode === 'index';
  const plan = {
    system: host.system,
    symlinks: host.symlinks,
    mounts: forwarded ? [FORWARDER_MOUNT] : [],
    network: false,
    privileged: host.privileged,
    uid: host.uidBase,
    gid: host.uidBase,
    limits: { fileSizeBytes: 1 << 20, openFiles: 64, cpuSec: 10, maxProcesses: 16 },
    tmpfsBytes: 1 << 20,
    prlimit: host.prlimit,
    setpriv: host.setpriv,
    handshake: { ...LAUNCH_FDS, ...(host.seccomp ? {} : { seccompFd: undefined }) },
  } satisfies Omit<BwrapPlan, 'cwd'>;
  const [command, args] = forwarded ? behindForwarder(host.python, '/bin/true', []) : ['/bin/true', []];
  const result = await runBounded(command, args, {
    cwd: '/',
    env: { PATH: hostPath },
    timeoutMs: 30_000,
    signal: new AbortController().signal,
    launch: {
      wrap: (command, args, cwd) => ({
        command: host.bwrap,
        args: bwrapArgs({ ...plan, cwd }, command, args),
      }),
      started: async () => () => undefined,
      seccomp: host.seccomp,
    },
  }).catch((error: unknown) => ({ kind: 'notStarted' as const, message: String(error), durationMs: 0 }));
  if (result.kind !== 'exited' || result.exitCode !== 0) {
    const detail = result.kind === 'notStarted' ? result.message : `${result.stderr}`.trim();
    throw new ConfigError(
      `the build sandbox cannot start on this host (${detail || result.kind}); bubblewrap needs unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1) or root${forwarded ? ', and the egress forwarder needs PYTHON 3.9+ on Linux 5.3+ (BUILD_EGRESS=internet does without it)' : ''}. Fix that, or set SANDBOX=off to run builds unsandboxed (unsafe)`,
    );
  }
}

// The request every runner of builds makes: the configured switch, and the interpreter and tools builds read.
export function sandboxRequest(
  config: Readonly<SandboxConfig>,
  hostPath: string,
  toolchain: { pythonPrefix: string; dir: string; basePython: string },
): SandboxRequest {
  return {
    enabled: config.enabled,
    uidBase: config.uidBase,
    hostPath,
    readOnly: [toolchain.pythonPrefix],
    tools: toolchain.dir,
    python: toolchain.basePython,
    egress: config.egress,
  };
}
