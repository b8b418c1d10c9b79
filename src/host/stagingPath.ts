import { randomUUID } from 'node:crypto';

// A name beside `path` that no other writer uses, for writing there first and renaming into place: unique across
// processes and across the concurrent builds of one process (a pid and a millisecond are not: two builds of one
// worker can promote the same environment in the same millisecond).
export function stagingPath(path: string, kind = 'tmp'): string {
  return `${path}.${kind}-${process.pid}-${randomUUID()}`;
}
