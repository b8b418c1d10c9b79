/** A real project from PyPI, built by the runner and run by hand, to compare the report with the tools' own say. */
export interface RealProject {
  /** pip requirement of the sdist (it carries the project's tests). */
  requirement: string;
  backend: string;
  layout: 'src' | 'flat';
  /** What of the project's own test set-up it exercises. */
  exercises: string;
  /** Where the injected failing test goes (relative to the tree). */
  testsDir: string;
  /** A module that gets an unused import (a lint finding). */
  lintTarget: string;
  /** pip install arguments (run in the tree) for the project's test dependencies, as its docs say. */
  testDependencies: string[];
  /** The suite is only worth comparing when it runs at least this many tests. */
  minTests: number;
}

// Six projects, one per build backend and test set-up the runner must respect. The bounded set (in `npm test`) is
// the first two; `npm run realworld` builds all of them.
export const REAL_PROJECTS: RealProject[] = [
  {
    requirement: 'toolz==1.2.0',
    backend: 'setuptools',
    layout: 'flat',
    exercises: 'tests inside the package',
    testsDir: 'toolz/tests',
    lintTarget: 'toolz/utils.py',
    testDependencies: [],
    minTests: 150,
  },
  {
    requirement: 'click==8.5.1',
    backend: 'flit_core',
    layout: 'src',
    exercises: "[dependency-groups] tests; addopts -m 'not stress'; filterwarnings error",
    testsDir: 'tests',
    lintTarget: 'src/click/utils.py',
    testDependencies: ['--group', 'tests'],
    minTests: 1000,
  },
  {
    requirement: 'attrs==26.1.0',
    backend: 'hatchling (+ hatch-vcs)',
    layout: 'src',
    exercises: '[dependency-groups] tests with hypothesis and pytest-xdist; --strict-markers, importlib mode',
    testsDir: 'tests',
    lintTarget: 'src/attr/converters.py',
    testDependencies: ['--group', 'tests'],
    minTests: 1000,
  },
  {
    requirement: 'tomlkit==0.15.2',
    backend: 'poetry-core',
    layout: 'flat',
    exercises: '[dependency-groups] dev (its own pytest pin), toml-test data files',
    testsDir: 'tests',
    lintTarget: 'tomlkit/api.py',
    testDependencies: ['--group', 'dev'],
    minTests: 300,
  },
  {
    requirement: 'findpython==0.9.0',
    backend: 'pdm-backend',
    layout: 'src',
    exercises: '[dependency-groups] tests',
    testsDir: 'tests',
    lintTarget: 'src/findpython/utils.py',
    testDependencies: ['--group', 'tests'],
    minTests: 20,
  },
  {
    requirement: 'more-itertools==11.2.1',
    backend: 'flit_core',
    layout: 'flat',
    exercises: 'no test dependencies at all, unittest-style tests',
    testsDir: 'tests',
    lintTarget: 'more_itertools/recipes.py',
    testDependencies: [],
    minTests: 500,
  },
];
