import { dirname } from 'node:path';

/** A host directory or file made visible inside the sandbox. */
export interface SandboxMount {
  source: string;
  target: string;
  writable?: boolean;
}

/** Limits the kernel enforces per process (rlimits), inherited by everything the build starts. */
export interface ProcessLimits {
  fileSizeBytes: number;
  openFiles: number;
  cpuSec: number;
  maxProcesses: number;
  /** Address-space cap, applied only where no memory cgroup holds the whole build. */
  addressSpaceBytes?: number;
}

export interface BwrapPlan {
  /** What every sandbox sees: the read-only system, the interpreter, the runner's tools. */
  system: SandboxMount[];
  /** Top-level paths that are symlinks on the host (`/bin` → `usr/bin`), recreated as such. */
  symlinks: Array<{ target: string; link: string }>;
  /** What this run sees of the build: its own directories and files. */
  mounts: SandboxMount[];
  cwd: string;
  /**
   * User-mode networking joins the sandbox after it started. Started by a normal user, bubblewrap moves a sandbox
   * whose uid differs from its namespace's (or that disables nested namespaces) into a second user namespace at a
   * moment slirp4netns cannot tell; these runs keep the first one (uid 0 inside, without capabilities, mapped to
   * the runner's uid outside; mounts stay locked either way).
   */
  network: boolean;
  /** Started by root: drop to this unprivileged uid/gid inside. Otherwise the runner's own user, namespaced. */
  privileged: boolean;
  uid: number;
  gid: number;
  limits: ProcessLimits;
  /** Size of the private `/tmp` and `/dev/shm` (memory-backed). */
  tmpfsBytes: number;
  prlimit: string;
  setpriv: string;
  /**
   * Where bubblewrap reports the sandbox's pid, and waits until the runner has attached cgroup and network; where
   * it reads the seccomp filter; and where the sandbox says, as the last step before the command, that it is set
   * up (the runner's own channel: closed before anything the build controls runs).
   */
  handshake?: { infoFd: number; blockFd: number; seccompFd?: number; startedFd?: number };
}

function depth(path: string): number {
  return path.split('/').filter(Boolean).length;
}

// The chain run inside: rlimits set, then (when started by root) the switch to the unprivileged build user with
// every capability dropped, then the command.
function innerCommand(plan: BwrapPlan, command: string, args: string[]): string[] {
  const { limits } = plan;
  const prlimit = [
    plan.prlimit,
    `--nproc=${limits.maxProcesses}`,
    `--fsize=${limits.fileSizeBytes}`,
    `--nofile=${limits.openFiles}`,
    `--cpu=${limits.cpuSec}`,
    '--core=0',
    ...(limits.addressSpaceBytes ? [`--as=${limits.addressSpaceBytes}`] : []),
    '--',
  ];
  const drop = plan.privileged
    ? [
        plan.setpriv,
        `--reuid=${plan.uid}`,
        `--regid=${plan.gid}`,
        '--clear-groups',
        '--no-new-privs',
        '--bounding-set=-all',
        '--inh-caps=-all',
        '--ambient-caps=-all',
        '--',
      ]
    : [];
  // The last step before the command: one byte on the runner's channel, which is then closed, so whatever the
  // command prints or exits with can never pass for the sandbox's own failure to start.
  const started = plan.handshake?.startedFd;
  const announce =
    started === undefined
      ? []
      : ['/bin/sh', '-c', `printf 1 >&${started} && exec ${started}>&- && exec "$@"`, 'ci-runner-started'];
  return [...prlimit, ...drop, ...announce, command, ...args];
}

// The bubblewrap command line for one sandboxed process: its own PID, IPC, UTS, cgroup and network namespaces, a
// root filesystem assembled from read-only binds, and writable only where the plan says.
export function bwrapArgs(plan: BwrapPlan, command: string, args: string[]): string[] {
  const out = [
    '--die-with-parent',
    '--new-session',
    '--unshare-pid',
    '--unshare-ipc',
    '--unshare-uts',
    '--unshare-net',
    '--unshare-cgroup-try',
    '--hostname',
    'ci-build',
  ];
  if (!plan.privileged) {
    out.push('--unshare-user', ...(plan.network ? ['--uid', '0', '--gid', '0'] : ['--disable-userns']));
    out.push('--cap-drop', 'ALL');
  }
  const operations: Array<{ target: string; args: string[] }> = [
    ...plan.symlinks.map((s) => ({ target: s.link, args: ['--symlink', s.target, s.link] })),
    ...[...plan.system, ...plan.mounts].map((m) => ({
      target: m.target,
      args: [m.writable ? '--bind' : '--ro-bind', m.source, m.target],
    })),
    { target: '/proc', args: ['--proc', '/proc'] },
    { target: '/dev', args: ['--dev', '/dev'] },
    {
      target: '/dev/shm',
      args: ['--perms', '1777', '--size', String(plan.tmpfsBytes), '--tmpfs', '/dev/shm'],
    },
    { target: '/tmp', args: ['--perms', '1777', '--size', String(plan.tmpfsBytes), '--tmpfs', '/tmp'] },
  ];
  // Parents before children, so a directory bound inside another mount is created in what the sandbox sees.
  operations.sort((a, b) => depth(a.target) - depth(b.target));
  const present = new Set<string>(['/']);
  for (const operation of operations) {
    const missing: string[] = [];
    for (let dir = dirname(operation.target); !present.has(dir); dir = dirname(dir)) missing.unshift(dir);
    for (const dir of missing) {
      out.push('--perms', '0755', '--dir', dir);
      present.add(dir);
    }
    out.push(...operation.args);
    present.add(operation.target);
  }
  out.push('--chdir', plan.cwd);
  if (plan.handshake) {
    out.push('--info-fd', String(plan.handshake.infoFd), '--block-fd', String(plan.handshake.blockFd));
    if (plan.handshake.seccompFd !== undefined) out.push('--seccomp', String(plan.handshake.seccompFd));
  }
  return [...out, '--', ...innerCommand(plan, command, args)];
}
