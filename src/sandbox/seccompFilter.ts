import { arch } from 'node:os';

// The seccomp filter every sandboxed process runs under (bwrap --seccomp), modelled on Docker's default profile:
// the kernel interfaces a build has no use for and that widen its reach into the kernel (keyrings, BPF, perf,
// userfaultfd, io_uring, mounts, new namespaces, module and clock control, ptrace, cross-process memory access) fail
// with EPERM. New user namespaces are refused in every mode: unshare always, clone with CLONE_NEWUSER; clone3 answers
// ENOSYS, so the C library falls back to clone, whose flags the filter can read.

/** Syscalls denied (EPERM), by name; numbers per architecture below. */
const DENIED = [
  'acct',
  'add_key',
  'bpf',
  'clock_adjtime',
  'clock_settime',
  'delete_module',
  'finit_module',
  'fsconfig',
  'fsmount',
  'fsopen',
  'fspick',
  'init_module',
  'io_uring_enter',
  'io_uring_register',
  'io_uring_setup',
  'kcmp',
  'kexec_file_load',
  'kexec_load',
  'keyctl',
  'lookup_dcookie',
  'mount',
  'mount_setattr',
  'move_mount',
  'name_to_handle_at',
  'nfsservctl',
  'open_by_handle_at',
  'open_tree',
  'perf_event_open',
  'pidfd_getfd',
  'pivot_root',
  'process_madvise',
  'process_vm_readv',
  'process_vm_writev',
  'ptrace',
  'quotactl',
  'reboot',
  'request_key',
  'setns',
  'settimeofday',
  'swapoff',
  'swapon',
  'umount2',
  'unshare',
  'userfaultfd',
  // x86_64 only
  'create_module',
  'get_kernel_syms',
  'ioperm',
  'iopl',
  'query_module',
  'sysfs',
  '_sysctl',
  'uselib',
  'ustat',
] as const;

type Syscall = (typeof DENIED)[number] | 'clone' | 'clone3';

interface Architecture {
  /** AUDIT_ARCH_* as seccomp_data.arch holds it. */
  audit: number;
  numbers: Partial<Record<Syscall, number>>;
  /** x86_64's x32 ABI numbers start here: all refused. */
  x32Base?: number;
}

// From the kernel's uapi headers (asm/unistd_64.h for x86_64, asm-generic/unistd.h for arm64).
const ARCHITECTURES: Record<string, Architecture> = {
  x64: {
    audit: 0xc000003e,
    x32Base: 0x40000000,
    numbers: {
      acct: 163,
      add_key: 248,
      bpf: 321,
      clock_adjtime: 305,
      clock_settime: 227,
      create_module: 174,
      delete_module: 176,
      finit_module: 313,
      fsconfig: 431,
      fsmount: 432,
      fsopen: 430,
      fspick: 433,
      get_kernel_syms: 177,
      init_module: 175,
      io_uring_enter: 426,
      io_uring_register: 427,
      io_uring_setup: 425,
      ioperm: 173,
      iopl: 172,
      kcmp: 312,
      kexec_file_load: 320,
      kexec_load: 246,
      keyctl: 250,
      lookup_dcookie: 212,
      mount: 165,
      mount_setattr: 442,
      move_mount: 429,
      name_to_handle_at: 303,
      nfsservctl: 180,
      open_by_handle_at: 304,
      open_tree: 428,
      pidfd_getfd: 438,
      process_madvise: 440,
      perf_event_open: 298,
      pivot_root: 155,
      process_vm_readv: 310,
      process_vm_writev: 311,
      ptrace: 101,
      query_module: 178,
      quotactl: 179,
      reboot: 169,
      request_key: 249,
      setns: 308,
      settimeofday: 164,
      swapoff: 168,
      swapon: 167,
      sysfs: 139,
      _sysctl: 156,
      umount2: 166,
      unshare: 272,
      uselib: 134,
      userfaultfd: 323,
      ustat: 136,
      clone: 56,
      clone3: 435,
    },
  },
  arm64: {
    audit: 0xc00000b7,
    numbers: {
      acct: 89,
      add_key: 217,
      bpf: 280,
      clock_adjtime: 266,
      clock_settime: 112,
      delete_module: 106,
      finit_module: 273,
      fsconfig: 431,
      fsmount: 432,
      fsopen: 430,
      fspick: 433,
      init_module: 105,
      io_uring_enter: 426,
      io_uring_register: 427,
      io_uring_setup: 425,
      kcmp: 272,
      kexec_file_load: 294,
      kexec_load: 104,
      keyctl: 219,
      lookup_dcookie: 18,
      mount: 40,
      mount_setattr: 442,
      move_mount: 429,
      name_to_handle_at: 264,
      nfsservctl: 42,
      open_by_handle_at: 265,
      open_tree: 428,
      pidfd_getfd: 438,
      process_madvise: 440,
      perf_event_open: 241,
      pivot_root: 41,
      process_vm_readv: 270,
      process_vm_writev: 271,
      ptrace: 117,
      quotactl: 60,
      reboot: 142,
      request_key: 218,
      setns: 268,
      settimeofday: 170,
      swapoff: 225,
      swapon: 224,
      umount2: 39,
      unshare: 97,
      userfaultfd: 282,
      clone: 220,
      clone3: 435,
    },
  },
};

const CLONE_NEWUSER = 0x10000000;
const EPERM = 1;
const ENOSYS = 38;

const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const JSET_K = 0x45;
const RET_K = 0x06;
const RET_ALLOW = 0x7fff0000;
const RET_ERRNO = 0x00050000;

/** seccomp_data offsets: nr, arch, and the low 32 bits of args[0] (little-endian on both architectures). */
const NR = 0;
const ARCH = 4;
const ARG0_LOW = 16;

type Instruction = { code: number; k: number; jt?: string; jf?: string } | { label: string };

// Lays out a program: jumps name labels; each becomes the offset from the instruction after the jump.
function assemble(program: Instruction[]): Buffer {
  const positions = new Map<string, number>();
  const code: Array<{ code: number; k: number; jt?: string; jf?: string }> = [];
  for (const item of program) {
    if ('label' in item) positions.set(item.label, code.length);
    else code.push(item);
  }
  const out = Buffer.alloc(code.length * 8);
  code.forEach((ins, index) => {
    const offset = (label?: string) => {
      if (label === undefined) return 0;
      const target = positions.get(label);
      const distance = target === undefined ? -1 : target - index - 1;
      if (distance < 0 || distance > 255) throw new Error(`seccomp filter: no forward jump to ${label}`);
      return distance;
    };
    out.writeUInt16LE(ins.code, index * 8);
    out.writeUInt8(offset(ins.jt), index * 8 + 2);
    out.writeUInt8(offset(ins.jf), index * 8 + 3);
    out.writeUInt32LE(ins.k >>> 0, index * 8 + 4);
  });
  return out;
}

/** The filter as bwrap reads it (an array of struct sock_filter), or why this host gets none. */
export type SeccompFilter = { program: Buffer; denied: number } | { unsupported: string };

// Builds the filter for the architecture the runner runs on.
export function seccompFilter(architecture = arch()): SeccompFilter {
  const target = ARCHITECTURES[architecture];
  if (!target) return { unsupported: `no seccomp filter for the ${architecture} architecture` };
  const { numbers } = target;
  const denied = DENIED.flatMap((name) => (numbers[name] === undefined ? [] : [numbers[name] as number]));
  const program: Instruction[] = [
    { code: LD_W_ABS, k: ARCH },
    { code: JEQ_K, k: target.audit, jf: 'deny' },
    { code: LD_W_ABS, k: NR },
    ...(target.x32Base ? [{ code: JGE_K, k: target.x32Base, jt: 'deny' }] : []),
    ...denied.map((nr) => ({ code: JEQ_K, k: nr, jt: 'deny' })),
    { code: JEQ_K, k: numbers.clone3 as number, jt: 'nosys' },
    { code: JEQ_K, k: numbers.clone as number, jt: 'clone' },
    { code: RET_K, k: RET_ALLOW },
    { label: 'clone' },
    { code: LD_W_ABS, k: ARG0_LOW },
    { code: JSET_K, k: CLONE_NEWUSER, jt: 'deny' },
    { code: RET_K, k: RET_ALLOW },
    { label: 'nosys' },
    { code: RET_K, k: RET_ERRNO | ENOSYS },
    { label: 'deny' },
    { code: RET_K, k: RET_ERRNO | EPERM },
  ];
  return { program: assemble(program), denied: denied.length };
}
