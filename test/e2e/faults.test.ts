import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { services } from '../../faults/cluster.js';
import { SCENARIOS } from '../../faults/scenarios.js';
import { formatCounts } from '../../faults/tally.js';

// The bounded fault suite: the same scenarios as `npm run faults`, smaller. Real processes, real kills.
const size = { commits: 3, kills: 2, malformed: 300 };

describe('faults: nothing lost, nothing conflicting, healthy afterwards', () => {
  before(async () => {
    await services('up');
  });

  after(async () => {
    await services('down');
  });

  for (const scenario of SCENARIOS) {
    test(scenario.name, async () => {
      const counts = await scenario(size);
      const line = formatCounts(counts);
      assert.equal(counts.lost, 0, line);
      assert.equal(counts.conflicting, 0, line);
      assert.equal(counts.strays, 0, line);
      assert.ok(counts.healthy, line);
      assert.equal(counts.mismatched, 0, line);
      assert.deepEqual(counts.problems, [], line);
      assert.equal(counts.reported, counts.sent, line);
    });
  }
});
