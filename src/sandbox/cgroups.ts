import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** The limits a build's control group enforces over all its processes together. */
export interface CgroupLimits {
  memoryBytes: number;
  maxProcesses: number;
}

/** What the kernel did to a build's processes because of its limits. */
export interface CgroupCounters {
  oomKills: number;
  forkRefusals: number;
}

/** One build's control group (one directory per controller on cgroup v1, one on v2). */
export interface BuildCgroup {
  join(pid: number): Promise<void>;
  setLimits(limits: CgroupLimits): Promise<void>;
  counters(): Promise<CgroupCounters>;
  /** Kills whatever is still in the group and removes it. */
  close(): Promise<void>;
}

/** The host's cgroup support, found once at start-up. */
export interface Cgroups {
  /** `v1`, `v2`, or why no limit can be applied through cgroups. */
  description: string;
  memory: boolean;
  pids: boolean;
  create(name: string, limits: CgroupLimits): Promise<BuildCgroup | undefined>;
  /** Kills what is left in a group a dead worker created, and removes it. */
  remove(name: string): Promise<void>;
}

interface Mount {
  type: string;
  path: string;
  options: string[];
}

async function mounts(): Promise<Mount[]> {
  const text = await readFile('/proc/self/mounts', 'utf8').catch(() => '');
  return text
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => fields[2] === 'cgroup' || fields[2] === 'cgroup2')
    .map((fields) => ({
      type: fields[2] as string,
      path: (fields[1] as string).replace(/\\040/g, ' '),
      options: (fields[3] ?? '').split(','),
    }));
}

/** This process's own group in each hierarchy: `memory` → `/a/b`, and `` (v2) → `/c`. */
async function ownGroups(): Promise<Map<string, string>> {
  const text = await readFile('/proc/self/cgroup', 'utf8').catch(() => '');
  const groups = new Map<string, string>();
  for (const line of text.split('\n')) {
    const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (controllers === undefined || path === undefined) continue;
    for (const controller of controllers.split(',')) groups.set(controller, path);
  }
  return groups;
}

async function readCounter(file: string, key: string): Promise<number> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const match = new RegExp(`^${key} (\\d+)$`, 'm').exec(text);
  return match ? Number(match[1]) : 0;
}

async function killAndRemove(dirs: string[]): Promise<void> {
  for (let round = 0; round < 50; round += 1) {
    const pids = new Set<number>();
    for (const dir of dirs) {
      const text = await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
      for (const pid of text.split('\n').filter(Boolean)) pids.add(Number(pid));
    }
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    const removed = await Promise.all(
      dirs.map((dir) =>
        rmdir(dir).then(
          () => true,
          (error: NodeJS.ErrnoException) => error.code === 'ENOENT',
        ),
      ),
    );
    if (removed.every(Boolean)) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

// cgroup v1: one directory per controller, nested under this process's own group so outer limits still hold. The
// cpu group has no limit: it makes the build one scheduling group, so a fork bomb shares one group's CPU time.
function v1Group(
  memoryDir: string | undefined,
  pidsDir: string | undefined,
  cpuDir: string | undefined,
): BuildCgroup {
  const dirs = [memoryDir, pidsDir, cpuDir].filter((dir): dir is string => dir !== undefined);
  return {
    async join(pid) {
      for (const dir of dirs) await writeFile(join(dir, 'cgroup.procs'), `${pid}\n`);
    },
    async setLimits(limits) {
      if (memoryDir) {
        await writeFile(join(memoryDir, 'memory.limit_in_bytes'), `${limits.memoryBytes}\n`);
        // Without swap accounting the group may still swap; with it, memory + swap is capped at the same size.
        await writeFile(join(memoryDir, 'memory.memsw.limit_in_bytes'), `${limits.memoryBytes}\n`).catch(
          () => undefined,
        );
      }
      if (pidsDir) await writeFile(join(pidsDir, 'pids.max'), `${limits.maxProcesses}\n`);
    },
    async counters() {
      return {
        oomKills: memoryDir ? await readCounter(join(memoryDir, 'memory.oom_control'), 'oom_kill') : 0,
        forkRefusals: pidsDir ? await readCounter(join(pidsDir, 'pids.events'), 'max') : 0,
      };
    },
    close: () => killAndRemove(dirs),
  };
}

// cgroup v2: one directory with both controllers enabled by its parent.
function v2Group(dir: string): BuildCgroup {
  return {
    async join(pid) {
      await writeFile(join(dir, 'cgroup.procs'), `${pid}\n`);
    },
    async setLimits(limits) {
      await writeFile(join(dir, 'memory.max'), `${limits.memoryBytes}\n`);
      await writeFile(join(dir, 'memory.swap.max'), '0\n').catch(() => undefined);
      await writeFile(join(dir, 'pids.max'), `${limits.maxProcesses}\n`);
    },
    async counters() {
      return {
        oomKills: await readCounter(join(dir, 'memory.events'), 'oom_kill'),
        forkRefusals: await readCounter(join(dir, 'pids.events'), 'max'),
      };
    },
    close: () => killAndRemove([dir]),
  };
}

async function tryMkdir(dir: string): Promise<boolean> {
  return mkdir(dir, { recursive: true }).then(
    () => true,
    () => false,
  );
}

const NONE = (description: string): Cgroups => ({
  description,
  memory: false,
  pids: false,
  create: async () => undefined,
  remove: async () => undefined,
});

/** The leaf a worker moves its own group's processes into on cgroup v2, so that group may enable controllers. */
export const WORKER_LEAF = 'ci-runner-worker';

const enable = (dir: string, wanted: string) =>
  writeFile(join(dir, 'cgroup.subtree_control'), wanted).then(
    () => true,
    () => false,
  );

// cgroup v2: the directory builds' groups are made in, nested under this process's own group (`own`, relative to the
// hierarchy's root), so whatever limits a container or service puts on the worker covers its builds too. A group
// with processes may not enable controllers for its children (cgroup v2's "no internal processes" rule), so the
// group's processes first move into a leaf of their own. Undefined when the runner may not do that (not root and no
// delegated subtree).
export async function v2BuildsParent(root: string, own: string, wanted: string): Promise<string | undefined> {
  // A worker started again inside the leaf an earlier start of its made: the group is the leaf's parent.
  const group = join(root, own.endsWith(`/${WORKER_LEAF}`) ? own.slice(0, -WORKER_LEAF.length - 1) : own);
  if (!(await enable(group, wanted))) {
    const leaf = join(group, WORKER_LEAF);
    if (!(await tryMkdir(leaf))) return undefined;
    const procs = await readFile(join(group, 'cgroup.procs'), 'utf8').catch(() => '');
    for (const pid of procs.split('\n').filter(Boolean)) {
      await writeFile(join(leaf, 'cgroup.procs'), `${pid}\n`).catch(() => undefined);
    }
    if (!(await enable(group, wanted))) return undefined;
  }
  const parent = join(group, 'ci-runner');
  return (await tryMkdir(parent)) && (await enable(parent, wanted)) ? parent : undefined;
}

// Finds where this host lets the runner create per-build groups with memory and process limits: cgroup v2 when
// its unified hierarchy has the controllers, else cgroup v1's memory and pids hierarchies; both under the runner's
// own group.
export async function detectCgroups(): Promise<Cgroups> {
  const all = await mounts();
  const own = await ownGroups();
  const unified = all.find((mount) => mount.type === 'cgroup2');
  if (unified) {
    const controllers = await readFile(join(unified.path, 'cgroup.controllers'), 'utf8').catch(() => '');
    if (/\bmemory\b/.test(controllers) && /\bpids\b/.test(controllers)) {
      const wanted = /\bcpu\b/.test(controllers) ? '+memory +pids +cpu\n' : '+memory +pids\n';
      const parent = await v2BuildsParent(unified.path, own.get('') ?? '/', wanted);
      if (parent) {
        return {
          description: 'cgroup v2',
          memory: true,
          pids: true,
          async create(name, limits) {
            const dir = join(parent, name);
            await mkdir(dir);
            const group = v2Group(dir);
            await group.setLimits(limits);
            return group;
          },
          remove: (name) => killAndRemove([join(parent, name)]),
        };
      }
    }
  }
  // cgroup v1 has no delegation a rootless runner could use (its directories may exist, made by root).
  if (process.getuid?.() !== 0) return NONE('no cgroup: the runner is not root');
  const v1 = (controller: string) => {
    const mount = all.find((m) => m.type === 'cgroup' && m.options.includes(controller));
    return mount ? join(mount.path, own.get(controller) ?? '/', 'ci-runner') : undefined;
  };
  const memoryParent = v1('memory');
  const pidsParent = v1('pids');
  const cpuParent = v1('cpu');
  const memory = memoryParent !== undefined && (await tryMkdir(memoryParent));
  const pids = pidsParent !== undefined && (await tryMkdir(pidsParent));
  const cpu = cpuParent !== undefined && (await tryMkdir(cpuParent));
  if (!memory && !pids) return NONE('no cgroup the runner may create groups in');
  return {
    description: `cgroup v1 (${[memory && 'memory', pids && 'pids', cpu && 'cpu'].filter(Boolean).join(', ')})`,
    memory,
    pids,
    async create(name, limits) {
      const memoryDir = memory && memoryParent ? join(memoryParent, name) : undefined;
      const pidsDir = pids && pidsParent ? join(pidsParent, name) : undefined;
      const cpuDir = cpu && cpuParent ? join(cpuParent, name) : undefined;
      for (const dir of [memoryDir, pidsDir, cpuDir]) if (dir) await mkdir(dir);
      const group = v1Group(memoryDir, pidsDir, cpuDir);
      await group.setLimits(limits);
      return group;
    },
    remove: (name) =>
      killAndRemove(
        [memory && memoryParent, pids && pidsParent, cpu && cpuParent]
          .filter((dir): dir is string => typeof dir === 'string')
          .map((dir) => join(dir, name)),
      ),
  };
}
