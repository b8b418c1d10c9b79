import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { after } from 'node:test';

// Imported by every end-to-end test file: once all its tests and their own teardown have run, nothing it started
// may still be alive: no process below this one, no socket, server, child-process handle or timer keeping the
// event loop alive that was not there when the file started. Waits briefly for things already closing.

/** Resource kinds that keep a process alive and that a test must have closed. */
const LEAKABLE = new Set([
  'TCPWrap',
  'TCPServerWrap',
  'TCPSERVERWRAP',
  'PipeServerWrap',
  'ProcessWrap',
  'Timeout',
]);
const GRACE_MS = 5_000;

const count = (kinds: string[]) =>
  kinds.reduce((counts, kind) => counts.set(kind, (counts.get(kind) ?? 0) + 1), new Map<string, number>());

const baseline = count(process.getActiveResourcesInfo());

// What keeps this process alive now that did not when the file started, by kind.
function extraResources(): string[] {
  const extra: string[] = [];
  for (const [kind, n] of count(process.getActiveResourcesInfo())) {
    const more = n - (baseline.get(kind) ?? 0);
    if (LEAKABLE.has(kind) && more > 0) extra.push(`${more} ${kind}`);
  }
  return extra;
}

// Every live process descending from this one (zombies excluded), with its command line.
async function descendants(): Promise<string[]> {
  const parents = new Map<number, number>();
  const names = new Map<number, string>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after its last ")".
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (rest[0] === 'Z' || rest[0] === undefined) continue;
    // tsx's esbuild service (`esbuild --service`), started whenever tsx first compiles: the test tooling's own.
    const command = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (/(^|\/)esbuild\0--service=/.test(command)) continue;
    parents.set(Number(entry), Number(rest[1]));
    names.set(Number(entry), stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')));
  }
  const ours = new Set([process.pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, parent] of parents) {
      if (!ours.has(pid) && ours.has(parent)) {
        ours.add(pid);
        grew = true;
      }
    }
  }
  ours.delete(process.pid);
  return [...ours].map((pid) => `${pid} ${names.get(pid)}`);
}

// What already ran below this process when the file started (tsx's esbuild service) is not the file's.
const earlier = new Set(await descendants());

after(async () => {
  const deadline = Date.now() + GRACE_MS;
  const started = async () => (await descendants()).filter((entry) => !earlier.has(entry));
  let processes = await started();
  let resources = extraResources();
  while ((processes.length > 0 || resources.length > 0) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    processes = await started();
    resources = extraResources();
  }
  assert.deepEqual(processes, [], `processes left running after the file's tests: ${processes.join(', ')}`);
  assert.deepEqual(resources, [], `handles left open after the file's tests: ${resources.join(', ')}`);
});
