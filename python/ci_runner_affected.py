"""pytest plugin loaded by ci-runner for `[tool.ci-runner] select = "affected"`, beside pytest-testmon (pinned by the
runner) and its own ci_runner_pytest_plugin, in a run under `coverage run`.

testmon records which tests execute which code blocks (.testmondata, TESTMON_DATAFILE) and, given the data of an
earlier build, deselects the tests no change can affect. This plugin makes that fit the runner:

- testmon measures each test with a coverage tracer of its own; told that the run's own coverage is "pytest-cov's"
  (the one way testmon supports), it hands every test's lines on to it, so the build's coverage still counts them;
- every test file is still collected (testmon skips importing unchanged ones), so import-time lines are measured,
  and the run keeps pytest's own test order (testmon sorts by duration);
- it records the lines each test executed (CI_RUNNER_AFFECTED_OUT/lines.json, with the text of each file, to map
  line numbers after an edit), and adds the lines of every test testmon deselected, from the earlier build's record
  (CI_RUNNER_AFFECTED_BASE), to the run's coverage: line_coverage stays that of the whole suite;
- it writes how many tests were selected of how many (CI_RUNNER_AFFECTED_OUT/selection.json).
"""

import difflib
import functools
import json
import os
import sys
import types
import warnings

import coverage
import coverage.exceptions
import pytest
import testmon.pytest_testmon as _testmon_plugin
from testmon import testmon_core as _testmon_core

_STATE = {"collected": None, "selected": None, "lines": {}}


def _keep_pytest_order(items, avg_durations):
    """testmon's sort_items_by_duration, replaced: the tests run in pytest's own order."""


_testmon_plugin.sort_items_by_duration = _keep_pytest_order

_original_select_init = _testmon_plugin.TestmonSelect.__init__


@functools.wraps(_original_select_init)
def _select_init(self, *args, **kwargs):
    _original_select_init(self, *args, **kwargs)
    # Collect every test file (import-time lines count); deselection is per test.
    self.deselected_files = []


_testmon_plugin.TestmonSelect.__init__ = _select_init

_original_modifyitems = _testmon_plugin.TestmonSelect.pytest_collection_modifyitems


@functools.wraps(_original_modifyitems)
def _modifyitems(self, session, config, items):
    _STATE["collected"] = [item.nodeid for item in items]
    _original_modifyitems(self, session, config, items)
    _STATE["selected"] = [item.nodeid for item in items]


_testmon_plugin.TestmonSelect.pytest_collection_modifyitems = _modifyitems

_original_batch = _testmon_core.TestmonCollector.get_batch_coverage_data


@functools.wraps(_original_batch)
def _batch(self, *args, **kwargs):
    nodes_files_lines = _original_batch(self, *args, **kwargs)
    for node, files in (nodes_files_lines or {}).items():
        record = _STATE["lines"].setdefault(node, {})
        for name, lines in files.items():
            record.setdefault(name, set()).update(lines)
    return nodes_files_lines


_testmon_core.TestmonCollector.get_batch_coverage_data = _batch


def _quiet(method):
    """testmon's tracer warns (say, a module imported before it started) where the project's filterwarnings may turn
    warnings into errors: its warnings are not the project's."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", coverage.exceptions.CoverageWarning)
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
    cov = coverage.Coverage.current()
    if cov is not None and cov.config.branch:
        # testmon's lines cannot join branch data: every test runs, as without select = "affected".
        setattr(config.option, "no-testmon", True)
        _write_selection({"unsupported": "the repository's coverage measures branches (branch = true)"})
        return
    if cov is not None and not config.pluginmanager.has_plugin("_cov"):
        config.pluginmanager.register(_RunCoverage(cov), "_cov")


def _write_selection(account):
    out = os.environ.get("CI_RUNNER_AFFECTED_OUT")
    if out:
        with open(os.path.join(out, "selection.json"), "w", encoding="utf-8") as handle:
            json.dump(account, handle)


def _ranges(lines):
    """Sorted line numbers as [start, count, start, count, ...]."""
    out = []
    for line in sorted(lines):
        if out and out[-2] + out[-1] == line:
            out[-1] += 1
        else:
            out.extend((line, 1))
    return out


def _lines(ranges):
    return [start + k for start, count in zip(ranges[::2], ranges[1::2]) for k in range(count)]


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            return handle.read()
    except OSError:
        return None


def _line_map(old, new):
    """Old line number -> new, for the lines an edit left as they were (None: the file is unchanged)."""
    if old == new:
        return None
    matcher = difflib.SequenceMatcher(None, old.splitlines(), new.splitlines(), autojunk=False)
    mapping = {}
    for a, b, size in matcher.get_matching_blocks():
        for k in range(size):
            mapping[a + k + 1] = b + k + 1
    return mapping


def _carried_over(base, rootdir, unaffected):
    """The lines of the tests testmon deselected, as the earlier build recorded them, moved to where they are in
    this tree (a line an edit changed is dropped: testmon re-runs a test that executed one)."""
    texts = {}
    maps = {}
    carried = {}
    for node in unaffected:
        files = base["tests"].get(node)
        if files is None:
            continue
        record = {}
        for name, ranges in files.items():
            if name not in texts:
                texts[name] = _read(os.path.join(rootdir, name))
                old = base["files"].get(name)
                maps[name] = None if texts[name] is None or old is None else _line_map(old, texts[name])
            if texts[name] is None or base["files"].get(name) is None:
                continue
            mapping = maps[name]
            lines = _lines(ranges)
            record[name] = set(lines) if mapping is None else {mapping[n] for n in lines if n in mapping}
        carried[node] = record
    return carried


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("CI_RUNNER_AFFECTED_OUT")
    collected, selected = _STATE["collected"], _STATE["selected"]
    if not out or collected is None or selected is None:
        return
    rootdir = str(session.config.rootpath)
    base_path = os.environ.get("CI_RUNNER_AFFECTED_BASE")
    base = {"tests": {}, "files": {}}
    if base_path:
        with open(base_path, encoding="utf-8") as handle:
            base = json.load(handle)
    chosen = set(selected)
    unaffected = [node for node in collected if node not in chosen]
    carried = _carried_over(base, rootdir, unaffected)
    # The deselected tests' lines join the run's coverage, as testmon's hand-over does for the tests that ran.
    cov = coverage.Coverage.current()
    if cov is not None:
        by_file = {}
        for files in carried.values():
            for name, lines in files.items():
                by_file.setdefault(os.path.join(rootdir, name), set()).update(lines)
        included = {
            path: sorted(lines)
            for path, lines in by_file.items()
            if lines and _should_include(cov, path)
        }
        if included:
            cov.get_data().add_lines(included)
    tests = {node: files for node, files in carried.items()}
    for node, files in _STATE["lines"].items():
        if node in chosen:
            tests[node] = files
    names = {name for files in tests.values() for name in files}
    texts = {name: _read(os.path.join(rootdir, name)) for name in sorted(names)}
    record = {
        "tests": {
            node: {name: _ranges(lines) for name, lines in files.items() if texts.get(name) is not None}
            for node, files in tests.items()
        },
        "files": {name: text for name, text in texts.items() if text is not None},
    }
    with open(os.path.join(out, "lines.json"), "w", encoding="utf-8", errors="surrogateescape") as handle:
        json.dump(record, handle, separators=(",", ":"))
    missing = sum(1 for node in unaffected if node not in base["tests"])
    _write_selection(
        {"total": len(collected), "selected": len(selected), "carried": len(carried), "missing": missing}
    )
