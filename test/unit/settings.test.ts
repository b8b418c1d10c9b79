import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { describe, test } from 'node:test';
import { parseRepoSettings, type RepoSettings } from '../../src/stages/settings.js';

const defaults: RepoSettings = {
  pytestMark: 'fast',
  pytestArgs: [],
  lint: true,
  testWorkers: 1,
  flakyReruns: 2,
  select: 'all',
  limits: {
    checkoutMs: 120_000,
    settingsMs: 30_000,
    installMs: 900_000,
    lintMs: 300_000,
    testMs: 900_000,
    coverageMs: 60_000,
    artefactMs: 300_000,
  },
  resources: {
    memoryMb: 2048,
    diskMb: 4096,
    maxProcesses: 512,
    fileSizeMb: 1024,
    openFiles: 1024,
    cpuSec: 1800,
  },
};

function problem(raw: unknown): string {
  const result = parseRepoSettings(raw, defaults);
  assert.ok('problem' in result, 'rejected');
  return result.problem;
}

describe('parseRepoSettings', () => {
  test('an empty table keeps the runner defaults', () => {
    assert.deepEqual(parseRepoSettings({}, defaults), defaults);
  });

  test('every key is applied; limits may shorten but never lengthen the runner limits', () => {
    const settings = parseRepoSettings(
      {
        'pytest-mark': 'unit and not slow',
        'pytest-args': ['-k', 'api', '--maxfail=3'],
        lint: false,
        'test-workers': 64,
        'flaky-reruns': 5,
        select: 'affected',
        'test-timeout-sec': 60,
        'install-timeout-sec': 99_999,
        'lint-timeout-sec': 30,
        'coverage-timeout-sec': 5,
        'artefact-timeout-sec': 99_999,
        'memory-mb': 512,
        'max-processes': 99_999,
        'file-size-mb': 10,
        'open-files': 256,
        'cpu-sec': 60,
      },
      defaults,
    );
    assert.deepEqual(settings, {
      pytestMark: 'unit and not slow',
      pytestArgs: ['-k', 'api', '--maxfail=3'],
      lint: false,
      testWorkers: availableParallelism(),
      flakyReruns: 2,
      select: 'affected',
      limits: {
        checkoutMs: 120_000,
        settingsMs: 30_000,
        installMs: 900_000,
        lintMs: 30_000,
        testMs: 60_000,
        coverageMs: 5_000,
        artefactMs: 300_000,
      },
      resources: {
        memoryMb: 512,
        diskMb: 4096,
        maxProcesses: 512,
        fileSizeMb: 10,
        openFiles: 256,
        cpuSec: 60,
      },
    });
    assert.equal(defaults.limits.testMs, 900_000, 'defaults untouched');
    assert.equal(defaults.resources.memoryMb, 2048, 'defaults untouched');
  });

  test('unknown keys and wrong types name the key', () => {
    assert.match(problem({ timeout: 3 }), /^\[tool\.ci-runner\] timeout: unknown key/);
    assert.match(problem({ lint: 'yes' }), /^\[tool\.ci-runner\] lint: must be true or false/);
    assert.match(problem({ 'test-workers': 0 }), /test-workers: must be "auto" or a whole number/);
    assert.match(problem({ 'test-workers': 'many' }), /test-workers: must be "auto" or a whole number/);
    assert.match(
      problem({ 'flaky-reruns': -1 }),
      /flaky-reruns: must be a whole number \(0 disables re-runs\)/,
    );
    assert.match(problem({ select: 'changed' }), /select: must be "all" or "affected"/);
    assert.match(problem({ 'pytest-mark': 3 }), /pytest-mark: must be a string/);
    assert.match(problem({ 'pytest-args': '-x' }), /pytest-args: must be an array of strings/);
    assert.match(problem({ 'test-timeout-sec': 1.5 }), /test-timeout-sec: must be a whole number/);
    assert.match(problem({ 'test-timeout-sec': 0 }), /test-timeout-sec: must be a whole number/);
    assert.match(problem({ 'memory-mb': '1G' }), /memory-mb: must be a whole number/);
    assert.match(problem({ 'memory-mb': 1 }), /memory-mb: must be a whole number \(at least 64\)/);
    assert.match(problem({ 'open-files': 6 }), /open-files: must be a whole number \(at least 64\)/);
    assert.match(problem([]), /must be a table/);
  });

  test('arguments the runner owns cannot be overridden', () => {
    for (const arg of [
      '-p',
      '--junitxml=x',
      '--junit-xml',
      '--basetemp=/',
      '-o',
      '--override-ini=x',
      '-m',
      '--co',
    ]) {
      assert.match(problem({ 'pytest-args': [arg] }), /is set by the runner/, arg);
    }
  });
});
