import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { blobMtime } from '../../src/git/materializeTree.js';
import { consoleScripts } from '../../src/stages/projectEnvironment.js';

describe('project environments and blob mtimes', () => {
  test('console scripts come only from plain dotted entry points; anything else is skipped', () => {
    const text = [
      '[console_scripts]',
      'greet = srclayout.cli:main',
      'tool = pkg:App.run [extra]',
      'evil = os:system; import shutil',
      'bad name = pkg:main',
      'inject = pkg:main()',
      '',
      '[pytest11]',
      'plugin = pkg.plugin',
      '',
      '[gui_scripts]',
      'window = pkg.gui:start',
    ].join('\n');
    assert.deepEqual(consoleScripts(text), [
      { name: 'greet', module: 'srclayout.cli', attr: 'main' },
      { name: 'tool', module: 'pkg', attr: 'App.run' },
      { name: 'window', module: 'pkg.gui', attr: 'start' },
    ]);
  });

  test('a blob id gives the same mtime every time, and different blobs different ones', () => {
    const a = 'e69de29bb2d1d6434b8b29ae775ad8c2e48c5391';
    const b = 'e69de29bb2d1d6434b8b29ae775ad8c2e48c5392';
    const c = 'e69de29bc2d1d6434b8b29ae775ad8c2e48c5391';
    assert.equal(blobMtime(a), blobMtime(a));
    assert.notEqual(blobMtime(a), blobMtime(c));
    assert.ok(blobMtime(a) > 1_000_000_000 && blobMtime(a) < 1_300_000_000);
    // Only the first 12 hex digits count: two blobs that share them share an mtime (and differ in size or hash).
    assert.equal(blobMtime(a), blobMtime(b));
  });
});
