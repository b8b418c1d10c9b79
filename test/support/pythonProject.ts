import type { Files } from './fixtureRepo.js';

// A small, lint-clean Python project with fast tests that pass; tests change it to make each case.
export function cleanProject(): Files {
  return {
    'pyproject.toml': [
      '[tool.pytest.ini_options]',
      'pythonpath = ["."]',
      'markers = ["fast: quick tests", "slow: long tests"]',
      '',
      '[tool.coverage.run]',
      'source = ["calc"]',
      '',
    ].join('\n'),
    'calc/__init__.py': [
      'def add(a, b):',
      '    return a + b',
      '',
      '',
      'def sub(a, b):',
      '    return a - b',
      '',
      '',
      'def unused(a):',
      '    if a:',
      '        return 1',
      '    return 0',
      '',
    ].join('\n'),
    'tests/test_calc.py': [
      'import pytest',
      '',
      'from calc import add, sub',
      '',
      '',
      '@pytest.mark.fast',
      'def test_add():',
      '    assert add(1, 2) == 3',
      '',
      '',
      '@pytest.mark.fast',
      'def test_sub():',
      '    assert sub(3, 2) == 1',
      '',
    ].join('\n'),
  };
}

// A fast test that fails, lint-clean.
export function failingTest(): Files {
  return {
    'tests/test_broken.py': [
      'import pytest',
      '',
      'from calc import add',
      '',
      '',
      '@pytest.mark.fast',
      'def test_add_is_wrong():',
      '    assert add(2, 2) == 5',
      '',
    ].join('\n'),
  };
}
