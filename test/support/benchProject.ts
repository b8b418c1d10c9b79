import type { Files } from './fixtureRepo.js';
import { cleanProject } from './pythonProject.js';

export type Backend = 'setuptools' | 'flit' | 'hatchling';

const BACKENDS: Record<Backend, string[]> = {
  setuptools: ['requires = ["setuptools>=61"]', 'build-backend = "setuptools.build_meta"'],
  flit: ['requires = ["flit_core>=3.4"]', 'build-backend = "flit_core.buildapi"'],
  hatchling: ['requires = ["hatchling"]', 'build-backend = "hatchling.build"'],
};

// An installable project's pyproject.toml; `declarations` is part of it, so a new value is a new environment key
// with warm package caches: what a user's "cold" build is (new dependency declarations), not empty caches.
function pyproject(backend: Backend, declarations: string): string {
  return [
    '[build-system]',
    ...BACKENDS[backend],
    '',
    '[project]',
    'name = "calc"',
    'version = "0.1.0"',
    `description = "bench fixture, declarations ${declarations}"`,
    'dependencies = ["six==1.16.0"]',
    '',
    '[tool.pytest.ini_options]',
    'markers = ["fast: quick tests", "slow: long tests"]',
    '',
    '[tool.coverage.run]',
    'source = ["calc"]',
    '',
  ].join('\n');
}

/** A module with a real formatter and linter workload: a dataclass, comprehensions, long signatures. */
export function benchModule(i: number, variant = 0): string {
  return [
    `"""Module ${i} of the bench fixture (variant ${variant})."""`,
    '',
    'from dataclasses import dataclass, field',
    '',
    '',
    '@dataclass',
    `class Account${i}:`,
    '    owner: str',
    '    balance: int = 0',
    '    history: list[int] = field(default_factory=list)',
    '',
    '    def deposit(self, amount: int, *, note: str | None = None) -> int:',
    '        if amount <= 0:',
    '            raise ValueError(f"deposit must be positive, got {amount} ({note})")',
    '        self.history.append(amount)',
    '        self.balance += amount',
    '        return self.balance',
    '',
    '    def summary(self) -> dict[str, int]:',
    '        positives = [value for value in self.history if value > 0]',
    '        return {"count": len(self.history), "total": sum(positives)}',
    '',
    '',
    `def f${i}(x):`,
    `    if x > ${i}:`,
    `        return x - ${i}`,
    `    return x + ${i + variant}`,
    '',
  ].join('\n');
}

// An installable project big enough to notice: the fixture package plus generated modules and their tests.
export function benchProject(modules: number, declarations: string, backend: Backend = 'setuptools'): Files {
  const files: Files = { ...cleanProject(), 'pyproject.toml': pyproject(backend, declarations) };
  for (let i = 0; i < modules; i += 1) {
    files[`calc/mod${i}.py`] = benchModule(i);
    files[`tests/test_mod${i}.py`] = [
      'import pytest',
      '',
      `from calc.mod${i} import Account${i}, f${i}`,
      '',
      '',
      '@pytest.mark.fast',
      `def test_f${i}():`,
      `    assert f${i}(${i + 1}) == 1`,
      '',
      '',
      '@pytest.mark.fast',
      `def test_account${i}():`,
      `    account = Account${i}("bench")`,
      '    assert account.deposit(5) == 5',
      '    assert account.summary()["count"] == 1',
      '',
    ].join('\n');
  }
  return files;
}
