import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type BwrapPlan, bwrapArgs } from '../../src/sandbox/bwrapArgs.js';
import { dependencyLines, exactPins } from '../../src/stages/sharedEnvironment.js';

const plan: BwrapPlan = {
  system: [
    { source: '/usr', target: '/usr' },
    { source: '/root/.pyenv/versions/3.11.7', target: '/root/.pyenv/versions/3.11.7' },
  ],
  symlinks: [{ target: 'usr/bin', link: '/bin' }],
  mounts: [
    { source: '/tmp/w/b1/src', target: '/workspace', writable: true },
    { source: '/tmp/w/b1/venv', target: '/ci/env' },
  ],
  cwd: '/workspace',
  network: false,
  privileged: true,
  uid: 812_345,
  gid: 812_345,
  limits: { fileSizeBytes: 1 << 30, openFiles: 1024, cpuSec: 1800, maxProcesses: 512 },
  tmpfsBytes: 256 << 20,
  prlimit: '/usr/bin/prlimit',
  setpriv: '/usr/bin/setpriv',
  handshake: { infoFd: 3, blockFd: 4 },
};

describe('bwrapArgs', () => {
  test('started by root: namespaces, writable only where asked, then rlimits and the switch to the build user', () => {
    const args = bwrapArgs(plan, 'python', ['-m', 'pytest']);
    for (const flag of [
      '--unshare-pid',
      '--unshare-net',
      '--unshare-ipc',
      '--unshare-uts',
      '--new-session',
      '--die-with-parent',
    ]) {
      assert.ok(args.includes(flag), flag);
    }
    const binds = args.flatMap((arg, i) => (arg === '--bind' ? [args[i + 2]] : []));
    assert.deepEqual(binds, ['/workspace'], 'only the checkout is writable here');
    assert.ok(args.includes('--ro-bind') && args[args.indexOf('/tmp/w/b1/venv') - 1] === '--ro-bind');
    const command = args.slice(args.indexOf('--') + 1);
    assert.deepEqual(command.slice(0, 2), ['/usr/bin/prlimit', '--nproc=512']);
    assert.ok(command.includes('--fsize=1073741824') && command.includes('--core=0'));
    assert.ok(
      !command.some((arg) => arg.startsWith('--as=')),
      'no address-space cap when a cgroup holds memory',
    );
    const drop = command.indexOf('/usr/bin/setpriv');
    assert.ok(drop > 0);
    assert.deepEqual(command.slice(drop + 1, drop + 3), ['--reuid=812345', '--regid=812345']);
    assert.ok(command.includes('--bounding-set=-all') && command.includes('--no-new-privs'));
    assert.deepEqual(command.slice(-3), ['python', '-m', 'pytest']);
  });

  test('the directories a mount point needs come first, readable, and parents before children', () => {
    const args = bwrapArgs(plan, 'true', []);
    const dirs = args.flatMap((arg, i) => (arg === '--dir' ? [args[i + 1]] : []));
    assert.deepEqual(dirs, ['/ci', '/root', '/root/.pyenv', '/root/.pyenv/versions']);
    assert.equal(args[args.indexOf('/root') - 2], '0755');
    assert.ok(args.indexOf('/root/.pyenv/versions') < args.indexOf('/root/.pyenv/versions/3.11.7'));
  });

  test('started by a normal user: a user namespace without nested ones, capabilities dropped, no setpriv', () => {
    const args = bwrapArgs(
      { ...plan, privileged: false, limits: { ...plan.limits, addressSpaceBytes: 1 << 31 } },
      'true',
      [],
    );
    assert.ok(args.includes('--unshare-user') && args.includes('--disable-userns'));
    assert.equal(args[args.indexOf('--cap-drop') + 1], 'ALL');
    assert.ok(!args.includes('/usr/bin/setpriv'));
    assert.ok(args.includes(`--as=${1 << 31}`));
    const online = bwrapArgs({ ...plan, privileged: false, network: true }, 'true', []);
    assert.ok(!online.includes('--disable-userns'), 'slirp4netns must be able to join its user namespace');
    assert.deepEqual(online.slice(online.indexOf('--uid'), online.indexOf('--uid') + 4), [
      '--uid',
      '0',
      '--gid',
      '0',
    ]);
  });
});

describe('resolved dependencies', () => {
  test('the project itself is installed apart; other local requirements stay', () => {
    const text = '# via uv\n-e file:///workspace\nsix==1.17.0\n-e file:///workspace/vendor/lib\n\n';
    assert.equal(dependencyLines(text, '/workspace'), 'six==1.17.0\n-e file:///workspace/vendor/lib\n');
  });

  test('only exact registry pins make a shared environment', () => {
    assert.deepEqual(exactPins('six==1.17.0\npytest==9.2.0\n'), ['six==1.17.0', 'pytest==9.2.0']);
    for (const line of [
      'evil @ https://example.invalid/evil.whl',
      '--index-url http://example.invalid',
      '-e /x',
      'six>=1',
    ]) {
      assert.equal(exactPins(`six==1.17.0\n${line}\n`), undefined, line);
    }
  });
});
