"""pytest plugin loaded by ci-runner: selects tests by the runner's mark expression and the repository's own,
and records exact node ids of failed and errored tests.

Written to the JSON file named by CI_RUNNER_PYTEST_RESULTS, so the runner never scrapes pytest's text output.
Under `coverage run`, it also writes coverage's JSON report (CI_RUNNER_COVERAGE_JSON) when the process exits, after
coverage saved its data: exactly `coverage json`, without a second Python process.
"""

import atexit
import glob
import json
import os
import re

import pytest

_START_DIR = os.getcwd()
_WORKER_COVERAGE = None
# The marks of the runner's expression the repository does not declare (then the expression is not applied).
_UNDECLARED = []


def _start_worker_coverage():
    """In a pytest-xdist worker of a run under `coverage run`: measure this process too, from now on (the plugin is
    imported before the project's conftests), into a data file of its own that the controller combines."""
    global _WORKER_COVERAGE
    data = os.environ.get("CI_RUNNER_COVERAGE_DATA")
    if not data or not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    import coverage

    _WORKER_COVERAGE = coverage.Coverage(data_file=data, data_suffix=True)
    _WORKER_COVERAGE.start()


_start_worker_coverage()


class _Recorder:
    def __init__(self, config):
        self.config = config
        self.failed = []
        self.passed = set()
        self.skipped = 0
        self.collected = 0
        self.ran = set()
        self._marker = None

    def _add(self, nodeid):
        if nodeid not in self.failed:
            self.failed.append(nodeid)
            if "::" in nodeid:
                self.ran.add(nodeid)
            self._write()

    def pytest_collectreport(self, report):
        if report.failed:
            self._add(report.nodeid or "<collection>")

    def pytest_collection_finish(self, session):
        self.collected = len(session.items)

    def pytest_runtest_logreport(self, report):
        # pytest 9 reports each unittest subTest / `subtests` fixture block as well: a test is counted once, and
        # fails when one of its subtests fails (as in pytest's JUnit report).
        subtest = type(report).__name__ == "SubtestReport"
        if report.failed:
            self._add(report.nodeid)
        elif report.when == "call" and report.passed and not subtest:
            self.passed.add(report.nodeid)
            self.ran.add(report.nodeid)
        elif report.skipped and report.when in ("setup", "call") and not subtest:
            self.skipped += 1

    def pytest_runtest_logstart(self, nodeid, location):
        # Before each test, so a run killed at its time limit still tells which test was running and how many
        # had run (the failed ones are in the results file, rewritten at each failure): one small write in place.
        path = os.environ.get("CI_RUNNER_PYTEST_RESULTS")
        if not path:
            return
        if self._marker is None:
            self._marker = os.open(f"{path}.running", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        data = f"{len(self.ran)}\t{nodeid}".encode("utf-8", "replace")
        os.pwrite(self._marker, data, 0)
        os.ftruncate(self._marker, len(data))

    def pytest_sessionfinish(self, session, exitstatus):
        self._write(exit_status=int(exitstatus))

    def _write(self, running=None, exit_status=None):
        path = os.environ.get("CI_RUNNER_PYTEST_RESULTS")
        if not path:
            return
        ran = len(self.ran)
        partial = f"{path}.partial"
        with open(partial, "w", encoding="utf-8") as handle:
            json.dump(
                {
                    "exit_status": exit_status,
                    "running": running,
                    "collected": self.collected,
                    "ran": ran,
                    "passed": len(self.passed.difference(self.failed)),
                    "skipped": self.skipped,
                    "failed": self.failed,
                    # Re-runs of failed tests (CI_RUNNER_PYTEST_PASSED_IDS) need which passed, by id.
                    **(
                        {"passed_ids": sorted(self.passed.difference(self.failed))}
                        if os.environ.get("CI_RUNNER_PYTEST_PASSED_IDS")
                        else {}
                    ),
                    "mark_expression": self.config.getoption("markexpr", "") or "",
                    "undeclared_marks": _UNDECLARED,
                },
                handle,
            )
        os.replace(partial, path)


def _combine_mark_expressions(config):
    """The runner's expression (CI_RUNNER_PYTEST_MARK) narrows the repository's own `-m` (from addopts, say
    "not stress") instead of replacing it, as a second `-m` on the command line would; but only when the repository
    declares every mark it names (pytest's `markers`, from any configuration file or conftest). A repository that has
    no `fast` mark runs its own default selection, not nothing."""
    runner = os.environ.get("CI_RUNNER_PYTEST_MARK", "").strip()
    if not runner:
        return
    declared = {line.split(":")[0].split("(")[0].strip() for line in config.getini("markers")}
    named = sorted({name for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", runner)} - {"and", "or", "not"})
    _UNDECLARED[:] = [name for name in named if name not in declared]
    if _UNDECLARED:
        return
    own = (config.getoption("markexpr", "") or "").strip()
    config.option.markexpr = f"({own}) and ({runner})" if own else runner


def _coverage_json():
    """What `coverage json --data-file=<data> -o <out>` writes, from the directory the run started in (its
    configuration). Runs as the interpreter exits: `coverage run` has stopped and saved its data by then."""
    data = os.environ.get("CI_RUNNER_COVERAGE_DATA")
    out = os.environ.get("CI_RUNNER_COVERAGE_JSON")
    if not data or not out:
        return
    try:
        import coverage

        os.chdir(_START_DIR)
        report = coverage.Coverage(data_file=data)
        report.load()
        if glob.glob(f"{glob.escape(data)}.*"):
            # Parallel workers measured themselves: their data joins the controller's.
            report.combine(data_paths=[os.path.dirname(data)])
        # The runner's own files on the run's path (CI_RUNNER_COVERAGE_OMIT, comma-separated) are not the project's.
        runner = [pattern for pattern in os.environ.get("CI_RUNNER_COVERAGE_OMIT", "").split(",") if pattern]
        omit = (list(report.config.report_omit or []) + runner) if runner else None
        report.json_report(outfile=out, omit=omit)
    except Exception as error:  # no data, or a broken configuration: the runner reports no coverage
        with open(f"{out}.error", "w", encoding="utf-8") as handle:
            handle.write(f"{type(error).__name__}: {error}\n")


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    # Last: the repository's conftests have registered their marks by then.
    worker = bool(os.environ.get("PYTEST_XDIST_WORKER"))
    if os.environ.get("CI_RUNNER_COVERAGE_JSON") and not worker:
        atexit.register(_coverage_json)
    _combine_mark_expressions(config)
    if not worker:
        # The controller sees every worker's reports: only it records results.
        config.pluginmanager.register(_Recorder(config), "ci_runner_recorder")


def pytest_unconfigure(config):
    if _WORKER_COVERAGE is not None:
        _WORKER_COVERAGE.stop()
        _WORKER_COVERAGE.save()
