import { randomInt } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { basename, isAbsolute, join, relative } from 'node:path';
import { chownBeneath } from '../host/beneath.js';
import { LAUNCH_FDS, type Launch } from '../host/runBounded.js';
import type { BuildResources } from '../ops/config.js';
import { CiError } from '../ops/errors.js';
import type { BuildLayout } from '../pipeline/layout.js';
import type { BuildDisk } from './buildDisk.js';
import { bwrapArgs, type ProcessLimits, type SandboxMount } from './bwrapArgs.js';
import type { BuildCgroup } from './cgroups.js';
import { describeEgress, describeSandbox } from './describeSandbox.js';
import { watchBuildDisk } from './diskWatcher.js';
import { behindForwarder, EGRESS_SOCKET, FORWARDER_MOUNT, PROXY_ENV } from './egressForwarder.js';
import { EgressPolicy, egressLookup } from './egressPolicy.js';
import { type EgressProxy, type EgressRefusals, openEgressProxy } from './egressProxy.js';
import { egressSocket } from './egressSocket.js';
import { limitWatcher, withDiskEvent } from './limitEvents.js';
import { type NoSandbox, type SandboxHost, TOOLS_PATH } from './sandboxHost.js';
import { attachUserNetwork } from './slirp.js';

/** What one sandboxed process may touch beyond the build's out/, home/ and tmp/ (always writable). */
export interface SandboxAccess {
  /** src/ and venv/ are read-only unless named here. */
  write?: Array<'src' | 'venv'>;
  /** The build's venv exists and is visible (read-only unless written). */
  venv?: boolean;
  /** A ready environment (host directory) bound read-only at the venv path instead of the build's own venv. */
  venvDir?: string;
  /** Lint: the lint tree (read-only) at the source path instead of the checkout, and lint's own directory. */
  lint?: boolean;
  /**
   * The process resolves or installs: it gets the build's egress (BUILD_EGRESS): the package index through the
   * runner's proxy, the internet (host loopback blocked), or nothing. Otherwise no network at all.
   */
  network?: boolean;
  /** A shared environment (host directory), visible read-only at `sharedEnvPath()`. */
  shared?: string;
  /** Runner files visible read-only at `runnerFile(path)`. */
  files?: string[];
  /** The test selection's own directory, writable (select = "affected"). */
  selection?: boolean;
}

/** One build's box: every process a repository controls runs through `launch`. */
export interface BuildSandbox {
  /** The runBounded launch for one process, or undefined when builds run unsandboxed. */
  launch(access: SandboxAccess): Launch | undefined;
  /** Where a runner file listed in `files` appears to the build. */
  runnerFile(hostPath: string): string;
  /** Where a host path of the runner's tools (interpreter, uv, pins) appears to the build. */
  tool(hostPath: string): string;
  /** Where the shared environment given as `shared` appears to the build. */
  sharedEnvPath(hostDir: string): string;
  /** Gives directories the runner prepared to the build's user (before the build writes them). */
  handOver(dirs: string[]): Promise<void>;
  /** Applies lower limits (from the repository's settings) to the rest of the build. */
  lower(resources: BuildResources): Promise<void>;
  /** How the build is contained, in one line, for its report. */
  description(): string;
  /** What the kernel enforced since the last call ("memory limit of 2048 MiB reached: …"). */
  limitEvents(): Promise<string[]>;
  /** Variables a process with `network` needs to reach its egress (the proxy's address, or offline). */
  egressEnv(): Record<string, string>;
  /** Connections the egress proxy refused since the last call. */
  egressRefusals(): EgressRefusals;
  close(): Promise<void>;
}

const MIB = 1024 * 1024;
const TMPFS_BYTES = 256 * MIB;
/** Entries handed to a build: its checkout is capped by CHECKOUT_MAX_FILES; everything else it gets is the runner's. */
const HANDOVER_MAX_ENTRIES = Number.MAX_SAFE_INTEGER;
const RUNNER_FILES = '/ci/runner';
const SHARED_ENV = '/ci/shared';

function passwd(uid: number, gid: number, home: string): { passwd: string; group: string } {
  return {
    passwd: `root:x:0:0:root:/root:/usr/sbin/nologin\nbuild:x:${uid}:${gid}:ci-runner build:${home}:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n`,
    group: `root:x:0:\nbuild:x:${gid}:\nnogroup:x:65534:\n`,
  };
}

/** The name of a build's control group, derived from its directory (so a later worker can clean it up). */
export function buildCgroupName(buildDir: string): string {
  return `build-${basename(buildDir)}`;
}

/** A build run with the runner's own powers: only an operator's SANDBOX=off leads here. */
export function noSandbox(): BuildSandbox {
  return {
    launch: () => undefined,
    runnerFile: (hostPath) => hostPath,
    tool: (hostPath) => hostPath,
    sharedEnvPath: (hostDir) => hostDir,
    handOver: async () => undefined,
    lower: async () => undefined,
    description: () => 'UNSANDBOXED (SANDBOX=off): the build ran with the runner’s user, network and files',
    limitEvents: async () => [],
    egressEnv: () => ({}),
    egressRefusals: () => ({ listed: [], total: 0 }),
    close: async () => undefined,
  };
}

// The build's control group where the host lets the runner make one with memory or pids controllers (as root, or in
// a cgroup v2 subtree delegated to a rootless runner); otherwise why not.
async function openCgroup(
  host: SandboxHost,
  layout: BuildLayout,
  limits: { memoryBytes: number; maxProcesses: number },
): Promise<{ cgroup?: BuildCgroup; notes: string[] }> {
  if (!host.cgroups.memory && !host.cgroups.pids) {
    const why = host.privileged ? host.cgroups.description : 'no cgroup: the runner is not root';
    return { notes: [`${why}; no memory limit over the whole build`] };
  }
  try {
    return { cgroup: await host.cgroups.create(buildCgroupName(layout.root), limits), notes: [] };
  } catch (error) {
    return { notes: [`cgroup not created (${String(error)})`] };
  }
}

// What one process of the build sees: its tree (or lint's copy), its own out/home/tmp, and what its access names.
function mountsFor(layout: BuildLayout, access: SandboxAccess, egress?: EgressProxy): SandboxMount[] {
  const write = access.write ?? [];
  const { inside } = layout;
  const mounts: SandboxMount[] = [
    access.lint
      ? { source: layout.lintTree, target: inside.src }
      : { source: layout.src, target: inside.src, writable: write.includes('src') },
    { source: layout.out, target: inside.out, writable: true },
    { source: layout.home, target: inside.home, writable: true },
    { source: layout.tmp, target: inside.tmp, writable: true },
    { source: join(layout.sandbox, 'passwd'), target: '/etc/passwd' },
    { source: join(layout.sandbox, 'group'), target: '/etc/group' },
  ];
  if (access.lint) mounts.push({ source: layout.lint, target: inside.lint, writable: true });
  if (access.selection) mounts.push({ source: layout.affected, target: inside.affected, writable: true });
  if (access.venvDir) mounts.push({ source: access.venvDir, target: inside.venv });
  else if (access.venv)
    mounts.push({ source: layout.venv, target: inside.venv, writable: write.includes('venv') });
  if (access.network)
    mounts.push({ source: join(layout.sandbox, 'resolv.conf'), target: '/etc/resolv.conf' });
  if (access.network && egress) {
    mounts.push({ source: egress.socketPath, target: EGRESS_SOCKET }, FORWARDER_MOUNT);
  }
  if (access.shared) mounts.push({ source: access.shared, target: SHARED_ENV });
  for (const path of access.files ?? [])
    mounts.push({ source: path, target: join(RUNNER_FILES, basename(path)) });
  return mounts;
}

// Opens the sandbox of one build: its own unprivileged uid (when the runner is root), its cgroup with memory and
// process limits where the host has one, and rlimits for everything else.
export async function openBuildSandbox(
  host: SandboxHost | NoSandbox,
  layout: BuildLayout,
  resources: BuildResources,
  /** The build's own filesystem, when the worker could give it one. */
  disk?: BuildDisk,
): Promise<BuildSandbox> {
  if (!host.enabled) return noSandbox();
  // Without a filesystem of its own (a worker that is not root), the runner measures the build and stops it.
  const watched = disk ? undefined : watchBuildDisk(layout.disk, resources.diskMb);
  const limited = disk ?? watched;
  const uid = host.privileged ? host.uidBase + randomInt(65_536) : (process.getuid?.() ?? 0);
  const gid = host.privileged ? uid : (process.getgid?.() ?? 0);
  const ids = passwd(uid, gid, layout.inside.home);
  await writeFile(join(layout.sandbox, 'passwd'), ids.passwd, { mode: 0o644 });
  await writeFile(join(layout.sandbox, 'group'), ids.group, { mode: 0o644 });
  // With the proxy there is no resolver at all (names are the proxy's to resolve); slirp4netns answers at 10.0.2.3.
  const internet = host.egress.mode === 'internet';
  const resolv = internet ? 'nameserver 10.0.2.3\n' : '# no DNS in a ci-runner build\n';
  await writeFile(join(layout.sandbox, 'resolv.conf'), resolv, { mode: 0o644 });
  const policy = new EgressPolicy(host.egress.rules, egressLookup(host.egress.dns));
  const socket = host.egress.mode === 'index' ? await egressSocket(layout.sandbox) : undefined;
  const proxy = socket ? await openEgressProxy(policy, socket.path) : undefined;
  let current = { ...resources };
  const cgroupLimits = () => ({ memoryBytes: current.memoryMb * MIB, maxProcesses: current.maxProcesses });
  const { cgroup, notes } = await openCgroup(host, layout, cgroupLimits());
  const memoryByCgroup = cgroup !== undefined && host.cgroups.memory;
  const pidsByCgroup = cgroup !== undefined && host.cgroups.pids;
  const processLimits = (): ProcessLimits => ({
    fileSizeBytes: current.fileSizeMb * MIB,
    openFiles: current.openFiles,
    cpuSec: current.cpuSec,
    maxProcesses: current.maxProcesses,
    ...(memoryByCgroup ? {} : { addressSpaceBytes: current.memoryMb * MIB }),
  });
  return {
    launch(access) {
      const viaSlirp = access.network === true && internet;
      const viaProxy = access.network === true ? proxy : undefined;
      const plan = {
        system: host.system,
        symlinks: host.symlinks,
        mounts: mountsFor(layout, access, viaProxy),
        network: viaSlirp,
        privileged: host.privileged,
        uid,
        gid,
        limits: processLimits(),
        tmpfsBytes: TMPFS_BYTES,
        prlimit: host.prlimit,
        setpriv: host.setpriv,
        handshake: { ...LAUNCH_FDS, ...(host.seccomp ? {} : { seccompFd: undefined }) },
      };
      return {
        wrap: (command, args, cwd) => ({
          command: host.bwrap,
          args: viaProxy
            ? bwrapArgs({ ...plan, cwd }, ...behindForwarder(host.python, command, args))
            : bwrapArgs({ ...plan, cwd }, command, args),
        }),
        async started(pid) {
          await cgroup?.join(pid);
          const untrack = watched?.track(pid);
          const network =
            viaSlirp && host.slirp ? await attachUserNetwork(host.slirp, pid, host.privileged) : undefined;
          return () => {
            untrack?.();
            network?.close();
          };
        },
        seccomp: host.seccomp,
      };
    },
    runnerFile: (hostPath) => join(RUNNER_FILES, basename(hostPath)),
    tool: (hostPath) => {
      const within = relative(host.tools, hostPath);
      return within.startsWith('..') || isAbsolute(within) ? hostPath : join(TOOLS_PATH, within);
    },
    sharedEnvPath: () => SHARED_ENV,
    async handOver(dirs) {
      if (!host.privileged) return;
      try {
        for (const dir of dirs) await chownBeneath(dir, uid, gid, HANDOVER_MAX_ENTRIES);
      } catch (error) {
        throw new CiError(
          'SANDBOX_FAULT',
          `handing the build directory to the build user failed: ${String(error)}`,
          {
            retriable: true,
            cause: error,
          },
        );
      }
    },
    async lower(lowered) {
      current = { ...lowered };
      await cgroup?.setLimits(cgroupLimits());
      await limited?.lower(lowered.diskMb);
    },
    description: () =>
      describeSandbox(host, uid, current, {
        memory: memoryByCgroup,
        pids: pidsByCgroup,
        notes,
        disk: limited,
        egress: describeEgress(host, policy),
      }),
    limitEvents: withDiskEvent(
      limitWatcher(cgroup, () => current),
      limited,
    ),
    egressEnv: () => (proxy ? PROXY_ENV : host.egress.mode === 'none' ? { UV_OFFLINE: '1' } : {}),
    egressRefusals: () => proxy?.takeRefusals() ?? { listed: [], total: 0 },
    close: async () => {
      await proxy?.close();
      await socket?.release();
      await watched?.close();
      await cgroup?.close();
    },
  };
}
