import { createHash } from 'node:crypto';
import { encodeCommitResult } from '../src/delivery/contracts.js';
import { scrapedValue } from '../test/support/scrapedValue.js';
import type { Cluster } from './cluster.js';
import { type Counts, type Size, tally, withCluster } from './tally.js';

/** commit-results accepts records up to 8 MB here; the dead-letter topic keeps Kafka's default (1 MB). */
const SOURCE_TOPIC = { 'max.message.bytes': String(8 * 1024 * 1024) };

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

// A small deterministic generator, so a failing run can be reproduced.
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state;
  };
}

interface Hostile {
  key: Buffer | null;
  value: Buffer;
  /** A well-formed CommitResult whose status is not SUCCESS: skipped (and counted), not dead-lettered. */
  skip: boolean;
}

// The ith hostile record: random bytes, wrong wire types, strings that are not UTF-8, injections, missing fields,
// truncated protobuf, binary and missing keys, and now and then one far larger than the dead-letter topic accepts.
function hostile(i: number, next: () => number, url: string): Hostile {
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => next() & 0xff));
  const binaryKey = bytes(1 + (next() % 24));
  const commit = (patch: Record<string, string>) =>
    encodeCommitResult({
      taskId: `t-${i}`,
      commitSha: (next() % 0xffffff).toString(16).padStart(40, '0'),
      branchName: 'main',
      status: 'SUCCESS',
      repositoryUrl: url,
      ...patch,
    });
  if (i % 1000 === 999) {
    return {
      key: Buffer.from(`oversize-${i}`),
      value: commit({ branchName: 'x'.repeat(2_000_000) }),
      skip: false,
    };
  }
  const kinds: Array<() => Hostile> = [
    () => ({ key: binaryKey, value: bytes(1 + (next() % 200)), skip: false }),
    () => ({ key: null, value: Buffer.from([0x10, next() & 0x7f, 0x22, 0x00]), skip: false }),
    () => ({ key: binaryKey, value: Buffer.from([0x22, 0x02, 0xc3, 0x28]), skip: false }),
    () => ({ key: Buffer.from(`bad-sha-${i}`), value: commit({ commitSha: 'z'.repeat(40) }), skip: false }),
    () => ({
      key: Buffer.from(`inject-${i}`),
      value: commit({ branchName: '--upload-pack=touch /tmp/x' }),
      skip: false,
    }),
    () => ({ key: null, value: commit({ repositoryUrl: 'file:///etc' }), skip: false }),
    () => ({ key: binaryKey, value: commit({ taskId: '' }), skip: false }),
    () => ({ key: Buffer.from(`no-status-${i}`), value: commit({ status: '' }), skip: false }),
    () => ({ key: Buffer.from(`failure-${i}`), value: commit({ status: 'FAILURE' }), skip: true }),
    () => ({ key: binaryKey, value: Buffer.alloc(0), skip: false }),
    () => {
      const whole = commit({});
      return { key: null, value: whole.subarray(0, 1 + (next() % (whole.length - 1))), skip: false };
    },
  ];
  return (kinds[i % kinds.length] as () => Hostile)();
}

// One line per record that identifies it on either side: its key and the sha256 of its whole value.
const identity = (key: Buffer | null, valueSha256: string) =>
  `${key ? key.toString('hex') : 'null'} ${valueSha256}`;

// Checks the dead-letter topic holds every invalid record exactly (truncated ones by their headers) and the bridge's
// counters say so; returns what is wrong.
async function checkDeadLetters(cluster: Cluster, sent: Hostile[]): Promise<string[]> {
  const invalid = sent.filter((record) => !record.skip);
  for (let waited = 0; cluster.deadLetters.length < invalid.length && waited < 120_000; waited += 500) {
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const expected = invalid.map((record) => identity(record.key, sha256(record.value))).sort();
  const letters = cluster.deadLetters.map((letter) => {
    const value = letter.value ?? Buffer.alloc(0);
    const original = letter.headers['x-original-sha256']?.toString() ?? sha256(value);
    return identity(letter.key, original);
  });
  letters.sort();
  const problems: string[] = [];
  if (letters.length !== expected.length) {
    problems.push(`${letters.length} dead letters for ${expected.length} invalid records`);
  }
  const missing = expected.filter((line) => !letters.includes(line));
  if (missing.length > 0) problems.push(`${missing.length} invalid records not dead-lettered as sent`);
  const truncated = cluster.deadLetters.filter((letter) => letter.headers['x-ci-runner-truncated']);
  for (const letter of truncated) {
    const size = Number(letter.headers['x-original-size']?.toString());
    if (!(size > (letter.value?.length ?? 0)))
      problems.push('a truncated dead letter does not say its original size');
  }
  const metrics = await cluster.bridgeMetrics();
  const counted = scrapedValue(metrics, 'ci_bridge_messages_total{outcome="dead_lettered"}');
  if (counted !== invalid.length) problems.push(`dead_lettered counts ${counted}, ${invalid.length} sent`);
  const skipped = scrapedValue(metrics, 'ci_bridge_messages_total{outcome="skipped"}');
  const skips = sent.length - invalid.length;
  if (skipped !== skips) problems.push(`skipped counts ${skipped}, ${skips} sent`);
  return problems;
}

// 5. Hostile at scale: thousands of invalid records (random bytes, wrong wire types, binary and missing keys,
// oversize) with valid commits between them. Every valid commit is built, every invalid record is dead-lettered
// byte for byte (or cut to fit, saying so) and counted, every skip is counted.
export function hostileAtScale(size: Size): Promise<Counts> {
  return withCluster(
    'hostile-at-scale',
    async (cluster) => {
      await cluster.start('bridge');
      await cluster.start('worker-a');
      const shas: string[] = [];
      for (let i = 0; i < size.commits; i += 1) shas.push(await cluster.commit(0));
      const next = random(42);
      const sent: Hostile[] = [];
      const batch = 100;
      const every = Math.max(batch, Math.floor(size.malformed / (shas.length + 1)));
      let valid = 0;
      for (let i = 0; i < size.malformed; i += batch) {
        const records = Array.from({ length: Math.min(batch, size.malformed - i) }, (_, k) =>
          hostile(i + k, next, cluster.repo.url),
        );
        await cluster.sendRaw(records.map(({ key, value }) => ({ key, value })));
        sent.push(...records);
        if (i % every === 0 && valid < shas.length) await cluster.announce(shas[valid++] as string);
      }
      while (valid < shas.length) await cluster.announce(shas[valid++] as string);
      const problems = await checkDeadLetters(cluster, sent);
      const oversize = cluster.deadLetters.filter((letter) => letter.headers['x-ci-runner-truncated']).length;
      const skips = sent.filter((record) => record.skip).length;
      const note = `${cluster.deadLetters.length} dead-lettered (${oversize} cut to fit), ${skips} skipped`;
      return tally(cluster, `${size.malformed} hostile records`, shas, note, problems);
    },
    {},
    SOURCE_TOPIC,
  );
}

// 5b. A poison pill: 5 MB CommitResults that commit-results accepts and the dead-letter topic does not. Each is
// dead-lettered cut to fit, with its original size and sha256, and the commits behind it are built.
export function poisonPill(size: Size): Promise<Counts> {
  return withCluster(
    'poison-pill',
    async (cluster) => {
      await cluster.start('bridge');
      await cluster.start('worker-a');
      const shas: string[] = [];
      const sent: Hostile[] = [];
      for (let i = 0; i < Math.max(2, Math.floor(size.commits / 2)); i += 1) {
        shas.push(await cluster.commit(0));
        const value = encodeCommitResult({
          taskId: `poison-${i}`,
          commitSha: 'e'.repeat(40),
          branchName: 'p'.repeat(5 * 1024 * 1024),
          status: 'SUCCESS',
          repositoryUrl: cluster.repo.url,
        });
        const record = { key: Buffer.from(`poison-${i}`), value, skip: false };
        await cluster.sendRaw([record]);
        sent.push(record);
        await cluster.announce(shas[i] as string);
      }
      const problems = await checkDeadLetters(cluster, sent);
      const cut = cluster.deadLetters.map((letter) => letter.value?.length ?? 0);
      return tally(
        cluster,
        '5 MB records the dead-letter topic refuses',
        shas,
        `dead letters of ${cut.join(', ')} bytes`,
        problems,
      );
    },
    {},
    SOURCE_TOPIC,
  );
}
