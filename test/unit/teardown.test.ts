import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Teardown } from '../../src/ops/lifecycle.js';
import { testLogger } from '../support/harness.js';

describe('Teardown', () => {
  test('runs its steps once, in reverse order of acquisition, however often it is closed', async () => {
    const ran: string[] = [];
    const teardown = new Teardown(testLogger('teardown'));
    for (const name of ['redis', 'kafka', 'server']) {
      teardown.add(name, async () => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        ran.push(name);
      });
    }
    await Promise.all([teardown.close(), teardown.close()]);
    await teardown.close();
    assert.deepEqual(ran, ['server', 'kafka', 'redis']);
  });

  test('a failing step is logged and the steps after it still run', async () => {
    const ran: string[] = [];
    const teardown = new Teardown(testLogger('teardown'));
    teardown.add('first', async () => {
      ran.push('first');
    });
    teardown.add('broken', async () => {
      throw new Error('cannot close');
    });
    teardown.add('last', async () => {
      ran.push('last');
    });
    await teardown.close();
    assert.deepEqual(ran, ['last', 'first']);
  });
});
