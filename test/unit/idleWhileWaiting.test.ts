import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { idleWhileWaiting, type ScaleBuild } from '../../bench/scaleSimulation.js';
import type { BuildReport } from '../../src/delivery/contracts.js';

// A build announced at `at` (s), started at `start` and reported at `end`.
function build(at: number, start: number, end: number): ScaleBuild {
  return {
    project: 'p',
    commitSha: `${at}-${start}`,
    announcedAt: at * 1000,
    reportedAt: end * 1000,
    report: { durationMs: (end - start) * 1000 } as BuildReport,
  };
}

describe('idleWhileWaiting, the scale simulation idle-host measure', () => {
  test('nothing while every waiting build has no idle host, or no build waits', () => {
    // Two hosts, two builds started at once: nobody waits.
    assert.equal(idleWhileWaiting([build(0, 0, 10), build(0, 0, 10)], 2), 0);
    // One host busy 0-10 s, a second build waits for it 0-10 s: no idle host meanwhile.
    assert.equal(idleWhileWaiting([build(0, 0, 10), build(0, 10, 12)], 1), 0);
  });

  test('host-seconds during which a host was idle and a build waited', () => {
    // Two hosts; the second build waits 0-3 s while the second host is idle: 3 host-seconds.
    assert.equal(idleWhileWaiting([build(0, 0, 10), build(0, 3, 5)], 2), 3);
    // Three hosts, two builds waiting 1-2 s with all hosts idle: min(3 idle, 2 waiting) for 1 s.
    assert.equal(idleWhileWaiting([build(1, 2, 4), build(1, 2, 4)], 3), 2);
  });
});
