"""pytest plugin loaded by ci-runner for `[tool.ci-runner] select = "affected"`, beside pytest-testmon (pinned by the
runner) and its own ci_runner_pytest_plugin, in a run under `coverage run`.

testmon records which tests execute which code blocks (.testmondata, TESTMON_DATAFILE) and, given the data of an
earlier build, deselects the tests no change can affect. This plugin makes that fit the runner:

- testmon measures each test with a coverage tracer of its own (measuring arcs too when the run's coverage measures
  branches); told that the run's own coverage is "pytest-cov's" (the one way testmon supports), it hands every
  test's lines or arcs on to it, so the build's coverage still counts them;
- a test file none of whose tests is selected is not collected when what its import depends on is unchanged since
  the earlier build (but for function bodies nothing ran at import): its import-time lines and arcs, and its tests'
  count, come from that build's record;
  every other file is collected (import-time lines are measured, per test file), and the run keeps pytest's own
  test order (testmon sorts by duration);
- it records what each test executed (CI_RUNNER_AFFECTED_OUT/lines.json, see ci_runner_affected_data), and adds
  what every deselected test executed, from the earlier build's record (CI_RUNNER_AFFECTED_BASE), to the run's
  coverage: line and branch coverage stay those of the whole suite;
- it writes how many tests were selected of how many (CI_RUNNER_AFFECTED_OUT/selection.json).
"""

import builtins
import contextlib
import functools
import gc
import importlib.util
import inspect
import json
import os
import sys
import sysconfig
import types
import warnings

import coverage
import coverage.exceptions
import pytest
import testmon.pytest_testmon as _testmon_plugin
from testmon import testmon_core as _testmon_core

import ci_runner_affected_blocks as _blocks
import ci_runner_affected_data as _data
import ci_runner_affected_failures as _failures

_STATE = {
    "collected": None,
    "selected": None,
    "lines": {},
    "arcs": {},
    "imports": {},
    "skipped_files": set(),
    "stable_files": set(),
    "live_functions": set(),
    "skipped_functions": set(),
    "functions": {},
    "base": None,
    "run_cov": None,
    "import_cov": None,
    "failures": {},
    "carried_failures": {},
    "stable_tests": set(),
}


def _empty_base():
    return {"tests": {}, "arcs": {}, "imports": {}, "functions": {}, "files": {}}


def _base():
    """The earlier build's record (empty for a full run, or when it cannot be used: then every test runs)."""
    if _STATE["base"] is None:
        base = _empty_base()
        path = os.environ.get("CI_RUNNER_AFFECTED_BASE")
        if path:
            try:
                with open(path, encoding="utf-8") as handle:
                    loaded = json.load(handle)
                if not isinstance(loaded, dict) or not all(isinstance(loaded.get(key, {}), dict) for key in base):
                    raise ValueError("not a record")
                base.update(loaded)
            except (OSError, ValueError, UnicodeDecodeError, RecursionError) as error:
                _STATE["unusable_base"] = f"{type(error).__name__}: {error}"[:200]
                base = _empty_base()
            # Hundreds of thousands of objects that live as long as the run: every garbage collection (Python's own
            # as tests allocate, pytest's as the session ends) would walk them all.
            gc.freeze()
        _STATE["base"] = base
    return _STATE["base"]


_BLOCKS = _blocks.BlockMemory()
_BLOCKS.install(_base)


def _keep_pytest_order(items, avg_durations):
    """testmon's sort_items_by_duration, replaced: the tests run in pytest's own order."""


_testmon_plugin.sort_items_by_duration = _keep_pytest_order
# ...so the durations it would sort by are not read from its database either.
_testmon_core.TestmonData.avg_durations = property(lambda self: {})

_original_select_init = _testmon_plugin.TestmonSelect.__init__


def _import_time_lines(base):
    """file -> the lines that ran before the first test in the earlier build: while conftests and plugins loaded
    (its "session" record) and while any test file was imported (a module runs once, for whichever test file imports
    it first, and its module-level state is every later importer's: what ran in a file counts for every importer)."""
    ran = {}
    for entry in base["imports"].values():
        for name in set(entry.get("lines", {})) | set(entry.get("arcs", {})):
            ran.setdefault(name, set()).update(_data.executed_lines(base, entry, name))
    for name in base.get("session", {}):
        ran.setdefault(name, set()).update(_data.executed_lines(base, {"lines": base["session"]}, name))
    return ran


class _ImportTime:
    """Whether the code of a file that ran before the first test in the earlier build is still there: the file is
    the same, or (Python) changed only in blocks (testmon's: module-level code with the function bodies left out,
    and each function body) nothing ran then."""

    def __init__(self, rootdir, base):
        self.rootdir = rootdir
        self.base = base
        self.ran = _import_time_lines(base)
        session = base.get("session", {})
        self.session = {name: _data.executed_lines(base, {"lines": session}, name) for name in session}
        self.blocks = _data.Blocks(rootdir)
        self._verdicts = {}

    def unchanged(self, name, ran=None):
        """Whether the code of a file that ran (in `ran`: by default, at any import) is still there."""
        ran = self.ran if ran is None else ran
        key = (name, ran is self.ran)
        if key not in self._verdicts:
            old = self.base["files"].get(name)
            new = _data.read(os.path.join(self.rootdir, name))
            same = old is not None and new == old
            if not same and name.endswith(".py") and name in ran:
                same = self.blocks.unchanged(name, old, ran[name])
            self._verdicts[key] = same
        return self._verdicts[key]

    def session_change(self):
        """The first file whose code that ran as conftests and plugins loaded changed (None: none): what they built
        (fixtures' data, patched modules) may be any test's."""
        return next((name for name in sorted(self.session) if not self.unchanged(name, self.session)), None)

    def stable(self, entry):
        """Whether importing a test file does what it did in the earlier build: each of its dependencies is what it
        was, or a Python file whose code that ran at import (by this import or any other) is unchanged. A file it
        opened or listed as data must be the same."""
        read = set(entry.get("read", ()))
        for name, sha in entry.get("deps", {}).items():
            if _data.fingerprint(self.rootdir, name) == sha:
                continue
            if name in read or not name.endswith(".py") or name not in self.ran or not self.unchanged(name):
                return False
        return True


@functools.wraps(_original_select_init)
def _select_init(self, config, testmon_data, *args, **kwargs):
    _original_select_init(self, config, testmon_data, *args, **kwargs)
    try:
        if _STATE.get("unusable_base"):
            raise ValueError(_STATE["unusable_base"])
        _select(self, config, testmon_data)
    except Exception as error:  # an earlier record this run cannot use (that build's tests could write it)
        _STATE["unusable_base"] = _STATE.get("unusable_base") or f"{type(error).__name__}: {error}"[:200]
        _STATE["base"] = _empty_base()
        _STATE.update(skipped_files=set(), stable_files=set(), live_functions=set(), carried_failures={})
        self.deselected_tests = set()
        self.deselected_files = []


def _select(self, config, testmon_data):
    # A test file whose import is known to do what it did in the earlier build ("import-stable": what it ran, named
    # and read is unchanged, but for function bodies nothing ran at import) defines the same tests: one none of whose
    # tests is affected is not collected, and in one that is, a test function none of whose tests is affected makes
    # no items.
    rootdir = str(config.rootpath)
    base = _base()
    import_time = _ImportTime(rootdir, base)
    change = import_time.session_change() if base["imports"] else None
    _STATE["import_time_change"] = change
    # Code that ran as conftests loaded changed: none is stable, every test runs.
    stable = set() if change else {name for name, entry in base["imports"].items() if import_time.stable(entry)}
    self.deselected_tests = set(self.deselected_tests)
    _STATE["stable_tests"] = set(testmon_data.stable_test_names)
    if not config.testmon_config.select:
        self.deselected_files = []
        return
    # testmon runs every test that failed before; one whose failure is known to repeat is reported, not run.
    carried = {} if change else _failures.carriable(base, _STATE["stable_tests"])
    if carried:
        _failing_files, failing = _testmon_plugin.get_failing(testmon_data.all_tests)
        self.deselected_tests |= set(carried)
        held = {node.split("::", 1)[0] for node in set(failing) - set(carried)}
        self.deselected_files = [name for name in testmon_data.stable_files if name not in held]
    # A test file whose import may now build something else (cases computed at import, say) runs every test: testmon
    # sees only what each test executed itself.
    changed = set(base["imports"]) - stable
    self.deselected_tests = {node for node in self.deselected_tests if node.split("::", 1)[0] not in changed}
    self.deselected_files = [name for name in self.deselected_files if name not in changed]
    # Left out where the module would be made (pytest_pycollect_makemodule below), not by testmon's
    # pytest_ignore_collect: that would keep the repository's own pytest_ignore_collect hooks from seeing the file.
    _STATE["skipped_files"] = {name for name in self.deselected_files if name in stable}
    self.deselected_files = []
    _STATE["stable_files"] = stable
    _STATE["carried_failures"] = {node: entry for node, entry in carried.items() if node in self.deselected_tests}
    _STATE["live_functions"] = {
        node.split("[", 1)[0] for node in base["tests"] if node not in self.deselected_tests
    }


_testmon_plugin.TestmonSelect.__init__ = _select_init

_original_modifyitems = _testmon_plugin.TestmonSelect.pytest_collection_modifyitems


@functools.wraps(_original_modifyitems)
def _modifyitems(self, session, config, items):
    _STATE["collected"] = [item.nodeid for item in items]
    _original_modifyitems(self, session, config, items)
    _STATE["selected"] = [item.nodeid for item in items]


_testmon_plugin.TestmonSelect.pytest_collection_modifyitems = _modifyitems


def _measure_params(rootdir, run):
    """What testmon's own tracer measures: the tree (and the run's sources), not the interpreter's libraries."""
    include = [os.path.join(rootdir, "*")]
    if run is not None and run.config.source:
        include += [os.path.join(os.path.abspath(source), "*") for source in run.config.source]
    elif run is not None and run.config.run_include:
        include += list(run.config.run_include)
    omit = {os.path.join(value, "*") for key, value in sysconfig.get_paths().items() if key.endswith("lib")}
    return {"include": sorted(set(include)), "omit": omit, "branch": bool(run is not None and run.config.branch)}


def _setup_coverage(self, subprocess=False):
    """testmon's setup_coverage, measuring arcs when the run's coverage measures branches (testmon refuses that)."""
    stack = _testmon_core.TestmonCollector.coverage_stack
    run = None
    if self.cov_plugin and self.cov_plugin._started:
        run = self.cov_plugin.cov_controller.cov
        stack.append(run)
    self.cov = coverage.Coverage(data_file=self.sub_cov_file, config_file=False, **_measure_params(self.rootdir, run))
    self.cov._warn_no_data = False
    if stack:
        stack[-1].stop()
    self.start_cov()
    _data.unhashed(self.cov)


_testmon_core.TestmonCollector.setup_coverage = _setup_coverage


def _hand_over(run, data, record_into=None, skip=()):
    """Adds what testmon's tracer measured to the run's coverage (lines, or arcs when it measures branches), and
    records it per context (a test, or a test file's import)."""
    rootdir = _STATE["rootdir"]
    by_file = {}
    for path in data.measured_files():
        relative = _testmon_core.cached_relpath(path, rootdir)
        if data.has_arcs():
            contexts = _data.arcs_by_context(data, path)
            kind = "arcs"
        else:
            contexts = {}
            for line, names in data.contexts_by_lineno(path).items():
                for name in names:
                    contexts.setdefault(name, set()).add(line)
            kind = "lines"
        for context, measured in contexts.items():
            by_file.setdefault(path, set()).update(measured)
            if record_into is not None and context and context not in skip:
                record_into[kind].setdefault(context, {}).setdefault(relative, set()).update(measured)
    if run is not None:
        _add_measured(run, by_file, data.has_arcs())


def _add_measured(run, by_file, arcs):
    """Adds {path: lines or arcs} to the run's coverage, for the files it measures."""
    included = {path: sorted(found) for path, found in by_file.items() if found and _should_include(run, path)}
    if included:
        with _no_coverage_warnings():
            (run.get_data().add_arcs if arcs else run.get_data().add_lines)(included)


def _batch(self):
    """testmon's get_batch_coverage_data, handing arcs over as well as lines, and recording both per test."""
    stack = _testmon_core.TestmonCollector.coverage_stack
    if self.check_stack != stack:
        pytest.exit(f"Exiting pytest: this test corrupts testmon's coverage stack: {self._test_name}", returncode=3)
    nodes_files_lines = {}
    if self.cov and (
        len(self.batched_test_names) >= _testmon_core.TEST_BATCH_SIZE
        or self._next_test_name is None
        or self._interrupted_at
    ):
        self.cov.stop()
        run = stack[-2] if len(stack) > 1 and stack[-1] == self.cov else None
        data = self.cov.get_data()
        if data.has_arcs():
            # One query per file for the arcs, each test's lines taken from them (testmon would query again).
            tests = {"lines": {}, "arcs": {}}
            _hand_over(run, data, tests, skip=(self._interrupted_at,))
            nodes_files_lines = {
                node: {name: {n for arc in arcs for n in arc if n > 0} for name, arcs in files.items()}
                for node, files in tests["arcs"].items()
            }
            for node, files in tests["arcs"].items():
                record = _STATE["arcs"].setdefault(node, {})
                for name, arcs in files.items():
                    record.setdefault(name, set()).update(arcs)
            self.batched_test_names.discard(self._interrupted_at)
            for name in self.batched_test_names:
                home = _testmon_core.home_file(name)
                nodes_files_lines.setdefault(name, {}).setdefault(home, {1})
        else:
            nodes_files_lines, lines_data = self.get_nodes_files_lines(dont_include=self._interrupted_at)
        if not data.has_arcs() and run is not None:
            _add_measured(run, lines_data, False)
        self.cov.erase()
        self.cov.start()
        _data.unhashed(self.cov)
        self.batched_test_names = set()
    for node, files in (nodes_files_lines or {}).items():
        lines = _STATE["lines"].setdefault(node, {})
        for name, numbers in files.items():
            lines.setdefault(name, set()).update(numbers)
    return nodes_files_lines


_testmon_core.TestmonCollector.get_batch_coverage_data = _batch
# testmon stops its tracer after every 250 tests, and a thread a test left running (a server that answers its last
# request as the next tests run) is traced by no one after that: fewer, larger batches lose fewer of its lines.
_testmon_core.TEST_BATCH_SIZE = 2000


@contextlib.contextmanager
def _no_coverage_warnings():
    """The tracers' own warnings (no data yet, a module imported before one started) are not the project's, whose
    filterwarnings may turn them into errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", coverage.exceptions.CoverageWarning)
        yield


def _quiet(method):
    """testmon's tracer warns (say, a module imported before it started) where the project's filterwarnings may turn
    warnings into errors: its warnings are not the project's."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _no_coverage_warnings():
            return method(*args, **kwargs)

    return wrapper


for _name in ("setup_coverage", "start_cov", "start_testmon", "get_batch_coverage_data", "close"):
    if hasattr(_testmon_core.TestmonCollector, _name):
        setattr(_testmon_core.TestmonCollector, _name, _quiet(getattr(_testmon_core.TestmonCollector, _name)))


def _module_name(path):
    """The dotted name a file is imported as, from the shortest path below a sys.path entry (None: not below one)."""
    best = None
    for entry in sys.path:
        base = os.path.abspath(entry or os.getcwd())
        if path.startswith(base + os.sep):
            relative = path[len(base) + 1 :]
            if best is None or len(relative) < len(best):
                best = relative
    if best is None or not best.endswith(".py"):
        return None
    parts = best[:-3].split(os.sep)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or None


def _should_include(cov, filename):
    """Whether the run's coverage measures a file, as if it ran it: testmon asks without a frame, which a `source`
    naming packages (matched by module name) always refuses."""
    name = _module_name(str(filename))
    frame = types.SimpleNamespace(f_globals={"__name__": name} if name else {})
    return cov._should_trace(str(filename), frame).trace


_testmon_core.should_include = _should_include


class _Controller:
    def __init__(self, cov):
        self.cov = cov


class _RunCoverage:
    """What testmon reads of pytest-cov's plugin: the run's own Coverage, started."""

    _started = True

    def __init__(self, cov):
        self.cov_controller = _Controller(cov)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    _STATE["rootdir"] = str(config.rootpath)
    cov = coverage.Coverage.current()
    _STATE["run_cov"] = cov
    if cov is not None:
        # It warned of modules imported before it as it started; the tracers here stop and restart it for every test
        # file imported and every batch of tests, and each restart would look through sys.modules again.
        cov._warn_preimported_source = False
        with _no_coverage_warnings():
            _data.unhashed(cov)
    if cov is not None and not config.pluginmanager.has_plugin("_cov"):
        config.pluginmanager.register(_RunCoverage(cov), "_cov")


def _module_file(name):
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    return os.path.abspath(path) if isinstance(path, str) else None


class _ImportWatch:
    """What a test file's import depends on besides the code it runs: the modules its import statements name (and
    those the names they import come from), at any depth of what importing it runs; the files it opens and the
    directories it lists (cases read from data files, or globbed)."""

    def __init__(self):
        self.files = set()
        self.opened = set()
        self.listed = set()
        self.original = builtins.__import__

    def __call__(self, name, globals=None, locals=None, fromlist=(), level=0):
        module = self.original(name, globals, locals, fromlist, level)
        try:
            full = name
            if level:
                package = (globals or {}).get("__package__") or ""
                full = importlib.util.resolve_name("." * level + name, package)
            names = [full]
            for item in fromlist or ():
                if not isinstance(item, str):
                    continue
                names.append(f"{full}.{item}")
                # A name re-exported by a package (`from pkg import NAME`) comes from the module that defines it.
                defined_in = getattr(getattr(module, item, None), "__module__", None)
                if isinstance(defined_in, str):
                    names.append(defined_in)
            for named in names:
                path = _module_file(named)
                if path:
                    self.files.add(path)
        except Exception:  # an import the watch cannot follow: the files its code ran still count
            pass
        return module


def _audit(event, args):
    """Files a test file's import opens and directories it lists, while it is being imported."""
    watch = _STATE.get("watch")
    if watch is None or not args:
        return
    if event in ("open", "os.listdir", "os.scandir"):
        path = args[0]
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str):
            return
        path = os.path.abspath(path)
        if "__pycache__" in path or path.endswith(".pyc"):
            return
        (watch.opened if event == "open" else watch.listed).add(path)


sys.addaudithook(_audit)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """Importing a test file is measured on its own (what it ran is its import record), then handed to the run."""
    run = _STATE["run_cov"]
    if run is None or not isinstance(collector, pytest.Module) or _STATE.get("collection_done"):
        yield
        return
    rootdir = _STATE["rootdir"]
    if _STATE["import_cov"] is None:
        _STATE["import_cov"] = coverage.Coverage(data_file=None, config_file=False, **_measure_params(rootdir, run))
        _STATE["import_cov"]._warn_no_data = False
    measure = _STATE["import_cov"]
    name = _testmon_core.cached_relpath(str(collector.path), rootdir)
    watch = _ImportWatch()
    with _no_coverage_warnings():
        run.stop()
        measure.start()
        _data.unhashed(measure)
        measure.switch_context(name)
    builtins.__import__ = watch
    _STATE["watch"] = watch
    try:
        outcome = yield
    finally:
        _STATE["watch"] = None
        builtins.__import__ = watch.original
        with _no_coverage_warnings():
            measure.stop()
            run.start()
    try:
        passed = outcome.get_result().passed
    except BaseException:  # the collection itself failed: no record, the file is collected next time
        passed = False
    if passed:
        inside = lambda paths: {_testmon_core.cached_relpath(p, rootdir) for p in paths if p.startswith(rootdir + os.sep)}
        read = inside(watch.opened) | {f"{listed}/" for listed in inside(watch.listed)}
        _STATE["imports"][name] = {"named": inside(watch.files), "read": read}


def pytest_collection_finish(session):
    """Before the first test: every import record complete, and what the imports ran handed to the run; the
    carried failures in the run's results (a run stopped at its time limit names them too)."""
    _STATE["collection_done"] = True
    recorder = session.config.pluginmanager.get_plugin("ci_runner_recorder")
    # A file that could not be collected stops the session before any test, and -x or --maxfail stop it at the first
    # failures: then no failure is carried (nor run), as none would be reported by a run of every test.
    if session.testsfailed or session.config.getoption("maxfail", 0) or recorder is None:
        _STATE["carried_failures"] = {}
    if recorder is not None:
        recorder.carry({node: entry["detail"] for node, entry in _STATE["carried_failures"].items()})
    rootdir = _STATE["rootdir"]
    _STATE["session"] = _ran_so_far(_STATE["run_cov"], rootdir)
    measure = _STATE["import_cov"]
    if measure is None:
        return
    record = {"lines": {}, "arcs": {}}
    with _no_coverage_warnings():
        _hand_over(_STATE["run_cov"], measure.get_data(), record)
    for name, entry in _STATE["imports"].items():
        lines = record["lines"].get(name, {})
        arcs = record["arcs"].get(name, {})
        code = {name} | entry.pop("named") | set(lines) | set(arcs)
        # Files it opened or listed as data (not its modules, which the import system opens too) must stay the same.
        read = entry.pop("read") - code
        entry["lines"] = lines
        entry["arcs"] = arcs
        entry["deps"] = {dep: _data.fingerprint(rootdir, dep) for dep in sorted(code | read)}
        entry["read"] = sorted(read)
    measure.erase()


def _ran_so_far(run, rootdir):
    """The lines of the tree the run's coverage measured before collection ended, outside test files' imports
    (measured on their own): what conftests and plugins ran as they loaded."""
    found = {}
    if run is None:
        return found
    with _no_coverage_warnings():
        data = run.get_data()
        for path in data.measured_files():
            if path.startswith(rootdir + os.sep):
                lines = data.lines(path)
                if lines:
                    found[_testmon_core.cached_relpath(path, rootdir)] = set(lines)
    return found


class _NotCollected(pytest.File):
    """A test file left uncollected (import-stable, none of its tests selected): never imported, no items."""

    def collect(self):
        return []


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path, parent):
    if _STATE["skipped_files"]:
        name = _testmon_core.cached_relpath(str(module_path), _STATE["rootdir"])
        if name in _STATE["skipped_files"]:
            return _NotCollected.from_parent(parent, path=module_path)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector, name, obj):
    """No items for a test function of an import-stable file none of whose tests is affected (its tests are counted,
    and their coverage carried, from the earlier build); a file's thousands of parametrized cases cost seconds."""
    if not _STATE["stable_files"] or not inspect.isfunction(obj):
        return None
    path = collector.nodeid.split("::", 1)[0]
    function = f"{collector.nodeid}::{name}"
    known = _base().get("functions", {}).get(path)
    if path not in _STATE["stable_files"] or not known or function not in known:
        return None
    if function in _STATE["live_functions"]:
        return None
    _STATE["skipped_functions"].add(function)
    return []


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    """The test functions each file defines (before any deselection), recorded for the next build."""
    for item in items:
        function = item.nodeid.split("[", 1)[0]
        _STATE["functions"].setdefault(function.split("::", 1)[0], set()).add(function)


def _write_selection(account):
    out = os.environ.get("CI_RUNNER_AFFECTED_OUT")
    if out:
        with open(os.path.join(out, "selection.json"), "w", encoding="utf-8") as handle:
            json.dump(account, handle)


def _carried(mover, unaffected, skipped):
    """What the deselected tests and the uncollected files' imports ran, from the earlier build, moved here (packed,
    as recorded; tests that ran the same lines share one list)."""
    base = _base()
    carrier = _data.Carrier(base, mover)
    tests = {}
    for node in unaffected:
        lines = base["tests"].get(node)
        if lines is not None:
            tests[node] = {"lines": carrier.carry(lines, "lines"), "arcs": carrier.carry(base["arcs"].get(node, {}), "arcs")}
    imports = {}
    for name in skipped:
        entry = base["imports"][name]
        imports[name] = {
            "lines": carrier.carry(entry.get("lines", {}), "lines"),
            "arcs": carrier.carry(entry.get("arcs", {}), "arcs"),
            # What they are now: the import was found to do what it did with them.
            "deps": {dep: _data.fingerprint(_STATE["rootdir"], dep) for dep in entry["deps"]},
            "read": entry.get("read", []),
        }
    return tests, imports


def _add_to_run(records, rootdir):
    """Adds packed lines or arcs to the run's coverage (those of the files it measures), each shared list once."""
    cov = _STATE["run_cov"]
    if cov is None:
        return
    with _no_coverage_warnings():
        arcs = cov.get_data().has_arcs()
    by_file = {}
    seen = set()
    for record in records:
        for name, packed in record["arcs" if arcs else "lines"].items():
            if (name, id(packed)) in seen:
                continue
            seen.add((name, id(packed)))
            found = by_file.setdefault(os.path.join(rootdir, name), set())
            found.update(zip(packed[::2], packed[1::2]) if arcs else _data.from_ranges(packed))
    _add_measured(cov, by_file, arcs)


def _packed(record):
    return {
        "lines": {name: _data.ranges(lines) for name, lines in record["lines"].items()},
        "arcs": {name: _data.flat_arcs(arcs) for name, arcs in record["arcs"].items()},
    }


@pytest.hookimpl(hookwrapper=True)
def pytest_runtestloop(session):
    """A carried failure fails the run as if it had run (pytest's exit status is 1, not 0)."""
    yield
    session.testsfailed += len(_STATE["carried_failures"])


def pytest_runtest_logreport(report):
    """Each failure of this run, with its details and frames (ci_runner_pytest_plugin): a test that failed more than
    once (its call and its teardown, or subtests) is never carried."""
    if not report.failed or "::" not in report.nodeid:
        return
    known = _STATE["failures"].get(report.nodeid)
    if known is not None:
        known["frames"] = None
        return
    detail = getattr(report, "ci_runner_failure", None)
    _STATE["failures"][report.nodeid] = {
        "detail": detail if isinstance(detail, dict) else None,
        "frames": getattr(report, "ci_runner_frames", None),
    }


def pytest_terminal_summary(terminalreporter):
    carried = len(_STATE["carried_failures"])
    if carried:
        terminalreporter.write_line(
            f"ci-runner: {carried} failed test(s) not run: each failed the same way in the last two builds that ran "
            "it, and neither its code nor its frames changed since"
        )


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    recorder = session.config.pluginmanager.get_plugin("ci_runner_recorder")
    failed, repeated = _STATE["failures"], _STATE["carried_failures"]
    order = _failures.in_run_order(recorder, _STATE["collected"] or [], failed, repeated) if recorder else list(failed)
    out = os.environ.get("CI_RUNNER_AFFECTED_OUT")
    collected, selected = _STATE["collected"], _STATE["selected"]
    if not out or collected is None or selected is None:
        return
    rootdir = _STATE["rootdir"]
    base = _base()
    skipped = sorted(_STATE["skipped_files"])
    chosen = set(selected)
    seen = set(collected)
    not_made = [
        node
        for node in base["tests"]
        if node not in seen
        and (node.split("::", 1)[0] in _STATE["skipped_files"] or node.split("[", 1)[0] in _STATE["skipped_functions"])
    ]
    unaffected = [node for node in collected if node not in chosen] + not_made
    mover = _data.Mover(base, rootdir)
    tests, carried_imports = _carried(mover, unaffected, skipped)
    # What the deselected tests and the uncollected files ran joins the run's coverage, as testmon's hand-over does
    # for the tests that ran.
    _add_to_run(list(tests.values()) + list(carried_imports.values()), rootdir)
    carried = len(tests)
    for node in chosen:
        tests[node] = _packed({"lines": _STATE["lines"].get(node, {}), "arcs": _STATE["arcs"].get(node, {})})
    imports = {
        name: {**_packed(entry), "deps": entry["deps"], "read": entry["read"]}
        for name, entry in _STATE["imports"].items()
        if "deps" in entry
    }
    imports.update(carried_imports)
    functions = {name: sorted(found) for name, found in _STATE["functions"].items()}
    for name, known in base["functions"].items():
        if name in _STATE["skipped_files"] or (name in _STATE["stable_files"] and name in functions):
            functions[name] = sorted(set(known) | set(functions.get(name, ())))
    session = _STATE.get("session") or {}
    names = {name for group in (tests, imports) for entry in group.values() for kind in ("lines", "arcs") for name in entry[kind]}
    names |= set(session)
    texts = {name: _data.read(os.path.join(rootdir, name)) for name in sorted(names)}
    packs = _data.Packs()
    present = lambda files: {name: packs.ref(packed) for name, packed in files.items() if texts.get(name) is not None}
    record = {
        "tests": {node: present(entry["lines"]) for node, entry in tests.items()},
        "arcs": {node: present(entry["arcs"]) for node, entry in tests.items() if entry["arcs"]},
        "imports": {
            name: {
                "lines": present(entry["lines"]),
                "arcs": present(entry["arcs"]),
                "deps": entry["deps"],
                "read": entry["read"],
            }
            for name, entry in imports.items()
        },
        "functions": functions,
        "files": {name: text for name, text in texts.items() if text is not None},
    }
    record["session"] = present({name: _data.ranges(lines) for name, lines in session.items()})
    record["failures"] = _failures.remembered(base, failed, repeated, _STATE["stable_tests"], order)
    record["blocks"] = _BLOCKS.record([os.path.join(rootdir, name) for name in record["files"] if name.endswith(".py")])
    record["packs"] = packs.table
    with open(os.path.join(out, "lines.json"), "w", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write(json.dumps(record, separators=(",", ":")))  # in one piece: json's C encoder
    missing = sum(1 for node in unaffected if node not in base["tests"])
    _write_selection(
        {
            "total": len(collected) + len(not_made),
            "selected": len(selected),
            "carried": carried,
            "missing": missing,
            "uncollected_files": len(skipped),
            "unmade_functions": len(_STATE["skipped_functions"]),
            "import_time_change": _STATE.get("import_time_change"),
            "carried_failures": sorted(_STATE["carried_failures"]),
            "unusable_base": _STATE.get("unusable_base"),
        }
    )
