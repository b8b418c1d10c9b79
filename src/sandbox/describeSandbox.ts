import type { BuildResources } from '../ops/config.js';
import type { BuildDisk } from './buildDisk.js';
import type { EgressPolicy } from './egressPolicy.js';
import type { SandboxHost } from './sandboxHost.js';

// What a build that resolves or installs may reach, in words.
export function describeEgress(host: SandboxHost, policy: EgressPolicy): string {
  if (host.egress.mode === 'internet')
    return 'install reaches the internet (BUILD_EGRESS=internet; host loopback blocked)';
  if (host.egress.mode === 'none')
    return 'no network at all (BUILD_EGRESS=none: install uses only what is cached)';
  const names = host.egress.rules.map((rule) =>
    rule.kind === 'host' ? rule.host : `${rule.address}/${rule.prefix}`,
  );
  return `no network; install reaches only the package index through the runner's proxy, no DNS (egress: package index only (${policy.size} hosts: ${[...new Set(names)].join(', ')}))`;
}

// One line for the report and the job log: what confined the build, with the limits in force.
export function describeSandbox(
  host: SandboxHost,
  uid: number,
  current: BuildResources,
  by: { memory: boolean; pids: boolean; notes: string[]; disk?: BuildDisk; egress: string },
): string {
  const user = host.privileged
    ? `uid ${uid} (unprivileged, all capabilities dropped)`
    : `the runner's uid ${uid} in a user namespace (capabilities dropped)`;
  const memory = by.memory
    ? `memory ${current.memoryMb} MiB (${host.cgroups.description})`
    : `memory ${current.memoryMb} MiB per process (RLIMIT_AS; ${by.notes.join('; ') || 'no memory cgroup'})`;
  const pids = by.pids
    ? `${current.maxProcesses} processes (${host.cgroups.description} + RLIMIT_NPROC)`
    : `${current.maxProcesses} processes (RLIMIT_NPROC only)`;
  return [
    `bubblewrap as ${user}; own PID, IPC, UTS, mount and network namespaces`,
    by.egress,
    memory,
    pids,
    `file size ${current.fileSizeMb} MiB, ${current.openFiles} open files, CPU ${current.cpuSec} s per process`,
    by.disk?.description() ?? 'disk: not limited',
    host.seccompNote,
  ].join('; ');
}
