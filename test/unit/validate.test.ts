import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decide, refProblem } from '../../src/bridge/validate.js';
import { type CommitResult, encodeCommitResult } from '../../src/delivery/contracts.js';

const sha = '0123456789abcdef0123456789abcdef01234567';
const valid: CommitResult = {
  taskId: 'task-1',
  commitSha: sha,
  branchName: 'feature/add-thing',
  status: 'SUCCESS',
  repositoryUrl: 'https://git.example.com/r.git',
};
const decideFor = (patch: Partial<CommitResult>, remote?: string) =>
  decide(encodeCommitResult({ ...valid, ...patch }), remote);

describe('decide', () => {
  test('a valid SUCCESS commit is enqueued with its data', () => {
    assert.deepEqual(decideFor({}), {
      kind: 'enqueue',
      data: {
        taskId: 'task-1',
        commitSha: sha,
        branchName: 'feature/add-thing',
        repositoryUrl: valid.repositoryUrl,
      },
    });
  });

  test('well-formed non-SUCCESS commits are skipped; one without a status or sha is rejected', () => {
    assert.equal(decideFor({ status: 'FAILURE' }).kind, 'skip');
    assert.equal(decideFor({ status: 'FAILURE', taskId: '', branchName: '' }).kind, 'skip');
    assert.match(reason(decideFor({ status: '' })), /^status is missing$/);
    assert.match(reason(decideFor({ status: 'FAILURE', commitSha: 'xyz' })), /40 hex/);
  });

  test('bytes that only look like a CommitResult are rejected, however they decode', () => {
    // commit_sha (field 2) sent as a varint: protobufjs alone would read on and produce garbage.
    assert.match(
      reason(decide(Buffer.from([0x12 & ~0x07, 0x05, 0x22, 0x00]), undefined)),
      /field 2 \(commitSha\) arrived as varint, not length-delimited/,
    );
    const notUtf8 = Buffer.concat([Buffer.from([0x22, 0x02]), Buffer.from([0xc3, 0x28])]);
    assert.match(reason(decide(notUtf8, undefined)), /field 4 \(status\) is not UTF-8/);
    assert.match(reason(decide(Buffer.from([0x07]), undefined)), /not a CommitResult: field number 0/);
    // An unknown field from a newer producer is fine as long as it is well-formed.
    const newer = Buffer.concat([encodeCommitResult(valid), Buffer.from([0x48, 0x01])]);
    assert.equal(decide(newer, undefined).kind, 'enqueue');
    // Random bytes never make a skip: they are built, or dead-lettered with a reason.
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed & 0xff;
    };
    for (let i = 0; i < 5000; i += 1) {
      const bytes = Buffer.from(Array.from({ length: 1 + (i % 64) }, random));
      assert.notEqual(decide(bytes, undefined).kind, 'skip', bytes.toString('hex'));
    }
  });

  test('an empty repository URL falls back to REMOTE_REPO, or is rejected without one', () => {
    const decision = decideFor({ repositoryUrl: '' }, 'https://fallback.example.com/r.git');
    assert.equal(
      decision.kind === 'enqueue' && decision.data.repositoryUrl,
      'https://fallback.example.com/r.git',
    );
    assert.match(reason(decideFor({ repositoryUrl: '' })), /REMOTE_REPO/);
  });

  test('bad input is rejected with a reason', () => {
    assert.match(reason(decide(Buffer.from([0x0f]), undefined)), /not a CommitResult: /);
    assert.match(
      reason(decide(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f]), undefined)),
      /not a CommitResult: index out of range/,
    );
    assert.match(reason(decideFor({ commitSha: '', status: 'FAILURE' })), /commit_sha is missing/);
    assert.match(reason(decide(null, undefined)), /empty/);
    assert.match(reason(decideFor({ commitSha: 'abc' })), /40 hex/);
    assert.match(reason(decideFor({ commitSha: `${sha.slice(0, 39)}g` })), /40 hex/);
    assert.match(reason(decideFor({ taskId: '' })), /task_id/);
    assert.match(reason(decideFor({ branchName: '--upload-pack=evil' })), /branch_name/);
    assert.match(reason(decideFor({ repositoryUrl: 'file:///etc/passwd' })), /http\(s\)/);
    assert.match(reason(decideFor({ repositoryUrl: '--config=x' })), /repository_url/);
    assert.match(reason(decideFor({ repositoryUrl: 'ssh://git@host/r.git' })), /http\(s\)/);
    assert.match(reason(decideFor({ repositoryUrl: 'https://u:token@host/r.git' })), /credentials/);
  });

  test('branch names follow git check-ref-format', () => {
    for (const good of ['main', 'feature/x-1', 'release/2024.05', 'agent/task_42']) {
      assert.equal(refProblem(good), undefined, good);
    }
    for (const bad of [
      '',
      '-x',
      'a..b',
      'a b',
      'a~1',
      'a^',
      'a:b',
      'a?',
      'a*',
      'a[',
      'a\\b',
      'x.lock',
      'a/.b',
      'a/',
      'a.',
      '@',
      'a@{1}',
      'a//b',
    ]) {
      assert.notEqual(refProblem(bad), undefined, JSON.stringify(bad));
    }
  });
});

function reason(decision: ReturnType<typeof decide>): string {
  assert.equal(decision.kind, 'reject');
  return decision.kind === 'reject' ? decision.reason : '';
}
