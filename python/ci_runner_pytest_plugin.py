"""pytest plugin loaded by ci-runner: selects tests by the runner's mark expression and the repository's own,
and records exact node ids of failed and errored tests.

Written to the JSON file named by CI_RUNNER_PYTEST_RESULTS, so the runner never scrapes pytest's text output.
Under `coverage run`, it also writes coverage's JSON report (CI_RUNNER_COVERAGE_JSON) when the process exits, after
coverage saved its data: exactly `coverage json`, without a second Python process, re-parsing only the files whose
analysis the repository's earlier builds did not leave (ci_runner_coverage_cache).
"""

import atexit
import builtins
import contextlib
import faulthandler
import glob
import hashlib
import json
import os
import re
import sys
import time

import pytest

_START_DIR = os.getcwd()
_WORKER_COVERAGE = None
# The marks of the runner's expression the repository does not declare (then the expression is not applied).
_UNDECLARED = []
# Test functions that made no items: -m would have deselected every one (pytest_pycollect_makeitem).
_UNMADE = []


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

# What a failure's details may hold (the report carries them to a coding agent): bytes of UTF-8 each.
_MESSAGE_MAX = 2048
_TRACEBACK_MAX = 8192
_OUTPUT_MAX = 2048
# Failures described in full; the rest are named with their kind only (the first _KINDS_MAX of them).
DETAILED_MAX = 50
_KINDS_MAX = 20_000
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_ROOT = os.path.realpath(_START_DIR)
_TMP = os.path.realpath(os.environ["TMPDIR"]) if os.environ.get("TMPDIR") else None
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")
# Paths of the runner's, not the repository's: shown by name, never as where they are.
_RUNNER_PATHS = sorted(
    {
        os.path.realpath(p)
        for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path)
        if p and not os.path.realpath(p).startswith(_ROOT + os.sep) and os.path.realpath(p) != _ROOT
    },
    key=len,
    reverse=True,
)


def _clean(text):
    """Text as the report may carry it: no colour, no control characters (NUL included), valid UTF-8, and the
    paths of the build's tree relative to its root."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = _ANSI.sub("", str(text))
    text = _CONTROL.sub("?", text).encode("utf-8", "replace").decode("utf-8")
    text = text.replace(_ROOT + os.sep, "")
    if _TMP:
        text = text.replace(_TMP + os.sep, "<tmp>/")
    for prefix in _RUNNER_PATHS:
        text = text.replace(prefix + os.sep, "<python>/")
    # Object addresses differ from run to run: the same commit gives the same details.
    return _ADDRESS.sub("0x…", text)


def _head(text, limit):
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    kept = data[:limit].decode("utf-8", "ignore")
    return f"{kept}… ({len(data) - len(kept.encode('utf-8'))} bytes more)"


def _tail(text, limit):
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    kept = data[-limit:].decode("utf-8", "ignore")
    return f"({len(data) - len(kept.encode('utf-8'))} bytes before) …{kept}"


def _in_tree(path):
    """A path of the repository's own tree (not the interpreter's, an installed package's or the runner's)."""
    real = os.path.realpath(str(path))
    if not real.startswith(_ROOT + os.sep):
        return None
    if any(real.startswith(prefix + os.sep) for prefix in _RUNNER_PATHS) or "site-packages" in real:
        return None
    return os.path.relpath(real, _ROOT)


def _location(excinfo, fallback):
    """`path:line` of the innermost frame inside the repository's tree."""
    for entry in reversed(list(excinfo.traceback)):
        relative = _in_tree(entry.path)
        if relative:
            return f"{relative}:{entry.lineno + 1}"
    return fallback


def _output(report):
    # Only the end of each section is ever shown: a test that prints 200 MB costs no more than one that prints 2 KB.
    parts = [f"----- {title} -----\n{content[-4 * _OUTPUT_MAX :]}" for title, content in report.sections if content]
    return _tail(_clean("\n".join(parts)), _OUTPUT_MAX) if parts else ""


def _describe(item, call, report):
    """A failed test's details, from pytest's own exception info (never its text output)."""
    excinfo = call.excinfo
    path, line, _name = item.location
    fallback = f"{path}:{(line or 0) + 1}"
    try:
        # As pytest shows it with --tb=short: its own frames pruned (the test's and what it called).
        shown = str(item._repr_failure_py(excinfo, style="short"))
    except Exception:
        shown = None
    try:
        shown = shown or str(excinfo.getrepr(style="short", funcargs=False, showlocals=False, chain=True))
    except Exception as error:  # a repr that raises: the exception's own line is still known
        shown = f"(traceback unavailable: {type(error).__name__})"
    return {
        "kind": "failed" if report.when == "call" else "error",
        "message": _head(_clean(excinfo.exconly()), _MESSAGE_MAX),
        "location": _location(excinfo, fallback),
        "traceback": _tail(_clean(shown), _TRACEBACK_MAX),
        "output": _output(report),
    }


def _describe_collection(report):
    """A file pytest could not collect: the error pytest shows for it, and where (a SyntaxError's own line)."""
    text = _clean(str(report.longrepr))
    errors = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    message = next((line for line in reversed(errors) if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line)), None)
    location = report.nodeid or "<collection>"
    for line in errors:
        match = re.match(r'^File "(.+)", line (\d+)', line)
        if match:
            relative = _in_tree(os.path.join(_ROOT, match.group(1)))
            if relative:
                location = f"{relative}:{match.group(2)}"
    return {
        "kind": "collection",
        "message": _head(message or (errors or text.strip().splitlines() or [""])[-1], _MESSAGE_MAX),
        "location": location,
        "traceback": _tail(text, _TRACEBACK_MAX),
        "output": "",
    }


def _describe_report(report):
    """A failure reported without the plugin's details (an xdist worker that crashed while running it): what the
    report itself says."""
    text = _clean(str(report.longrepr or ""))
    lines = [line for line in text.splitlines() if line.strip()]
    crashed = "crashed" in text
    return {
        "kind": "crashed" if crashed else ("failed" if report.when == "call" else "error"),
        "message": _head(lines[-1].strip() if lines else "", _MESSAGE_MAX),
        "location": "",
        "traceback": _tail(text, _TRACEBACK_MAX),
        "output": "",
    }


# Chained exceptions followed, at most, for a failure's frames; exception groups (3.11) are not followed.
_CHAIN_MAX = 32
_GROUPS = tuple(getattr(builtins, name) for name in ("BaseExceptionGroup",) if hasattr(builtins, name))
_FILE_LINES = {}


# A frame's file is read at most this far (a traceback's line in a larger file is not compared).
_FRAME_FILE_MAX = 16 * 1024 * 1024


def _read_lines(relative):
    """The lines of a regular file of the tree, by a clean relative path (None: anything else, or unreadable). The
    path may come from an earlier build's record, which that build's tests could write."""
    if (
        not isinstance(relative, str)
        or not relative
        or "\0" in relative
        or os.path.isabs(relative)
        or ".." in relative.split("/")
    ):
        return None
    try:
        path = os.path.realpath(os.path.join(_ROOT, relative))
        if not path.startswith(_ROOT + os.sep):
            return None
        with open(path, "rb") as handle:
            if not os.path.isfile(path) or os.fstat(handle.fileno()).st_size > _FRAME_FILE_MAX:
                return None
            return handle.read(_FRAME_FILE_MAX).splitlines(keepends=True)
    except (OSError, ValueError):
        return None


def prefix_digest(relative, count):
    """sha256 of the first `count` lines of a file of the tree, as it is now (None: not a file of the tree, or
    shorter)."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        return None
    if relative not in _FILE_LINES:
        _FILE_LINES[relative] = _read_lines(relative)
    lines = _FILE_LINES[relative]
    if lines is None or count > len(lines):
        return None
    return hashlib.sha256(b"".join(lines[:count])).hexdigest()


def _frames(excinfo):
    """{file: [n, sha256 of its first n lines]} for each file of the repository a frame of the failure is in (of the
    exception and every exception it chains), n the last line a frame is at: a later tree whose files are the same
    that far would show the same frames, at the same lines. None when that cannot be told (an exception group)."""
    exception = excinfo.value
    tb = excinfo.tb
    deepest = {}
    for _ in range(_CHAIN_MAX):
        if isinstance(exception, _GROUPS):
            return None
        while tb is not None:
            relative = _in_tree(tb.tb_frame.f_code.co_filename)
            if relative:
                deepest[relative] = max(deepest.get(relative, 0), tb.tb_lineno or 0)
            tb = tb.tb_next
        following = exception.__cause__ or (None if exception.__suppress_context__ else exception.__context__)
        if following is None:
            break
        exception, tb = following, following.__traceback__
    else:
        return None
    frames = {}
    for relative, count in sorted(deepest.items()):
        digest = prefix_digest(relative, count)
        if digest is None:
            return None
        frames[relative] = [count, digest]
    return frames


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In the process that ran the test (an xdist worker too): its failure's details ride on the report, with the
    files and lines its frames are at (ci_runner_affected carries a failure whose frames are unchanged)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.excinfo is not None and not hasattr(report, "ci_runner_failure"):
        try:
            report.ci_runner_failure = _describe(item, call, report)
        except Exception as error:  # the details never cost the verdict
            report.ci_runner_failure = {"kind": "failed", "message": f"(details unavailable: {error!r})"[:200]}
        try:
            report.ci_runner_frames = _frames(call.excinfo)
        except Exception:
            report.ci_runner_frames = None


def _watch_for_hang():
    """Shortly before the runner's time limit (CI_RUNNER_TEST_DEADLINE, in seconds since the epoch), every thread's
    stack is written to a file of this process: where a test hung, when the runner then stops it. (A repository's
    own `faulthandler_timeout` replaces this timer with pytest's.)"""
    deadline = os.environ.get("CI_RUNNER_TEST_DEADLINE")
    results = os.environ.get("CI_RUNNER_PYTEST_RESULTS")
    if not deadline or not results:
        return
    try:
        seconds = float(deadline) - time.time()
    except ValueError:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    handle = open(f"{results}.stack-{worker}", "w", encoding="utf-8")  # noqa: SIM115 (open until the process ends)
    faulthandler.dump_traceback_later(max(0.5, seconds), exit=False, file=handle)
    _HANG_FILE.append(handle)


_HANG_FILE = []


class _Recorder:
    def __init__(self, config):
        self.config = config
        self.failed = []
        self.passed = set()
        self.skipped = 0
        self.collected = 0
        self.ran = set()
        self._marker = None
        # Details of the first failures, and the kind of every one (written with the results).
        self.details = {}
        self.kinds = {}

    def _add(self, nodeid, detail=None):
        if nodeid not in self.failed:
            self.failed.append(nodeid)
            if "::" in nodeid:
                self.ran.add(nodeid)
            if detail and len(self.kinds) < _KINDS_MAX:
                self.kinds[nodeid] = detail.get("kind", "failed")
                if len(self.details) < DETAILED_MAX:
                    self.details[nodeid] = detail
                    self._write_details()
            self._write()

    def carry(self, failures):
        """Failures not run here: an earlier build's, carried (ci_runner_affected), {node id: details}. Failed, never
        counted as run; in the results at once (a run stopped at its time limit names them too)."""
        for nodeid, detail in failures.items():
            if nodeid in self.failed:
                continue
            self.failed.append(nodeid)
            if len(self.kinds) < _KINDS_MAX:
                self.kinds[nodeid] = str(detail.get("kind", "failed"))
                if len(self.details) < DETAILED_MAX:
                    self.details[nodeid] = detail
        if failures:
            self._write_details()
            self._write()

    def _write_details(self):
        path = os.environ.get("CI_RUNNER_PYTEST_RESULTS")
        if not path:
            return
        partial = f"{path}.failures.partial"
        with open(partial, "w", encoding="utf-8") as handle:
            json.dump({"details": self.details, "kinds": self.kinds}, handle, sort_keys=True)
        os.replace(partial, f"{path}.failures")

    def pytest_collectreport(self, report):
        if report.failed:
            self._add(report.nodeid or "<collection>", _describe_collection(report))

    def pytest_collection_finish(self, session):
        self.collected = len(session.items)

    def pytest_runtest_logreport(self, report):
        # pytest 9 reports each unittest subTest / `subtests` fixture block as well: a test is counted once, and
        # fails when one of its subtests fails (as in pytest's JUnit report).
        subtest = type(report).__name__ == "SubtestReport"
        if report.failed:
            self._add(report.nodeid, getattr(report, "ci_runner_failure", None) or _describe_report(report))
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
        self._write_details()
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
                    "unmade_functions": len(_UNMADE),
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


# The -m expression, compiled, with every name it uses (None: not one whose outcome is known before items exist).
_MARK_FILTER = {}
_MAX_UNKNOWN_MARKS = 8


def _mark_filter(config):
    text = (config.getoption("markexpr", "") or "").strip()
    if text not in _MARK_FILTER:
        _MARK_FILTER.clear()
        _MARK_FILTER[text] = None
        # Marks with arguments ("slow(level=2)") are matched on the items' own arguments: not decided here.
        if text and "=" not in text:
            try:
                from _pytest.mark.expression import Expression

                names = set(re.findall(r"[^\s()]+", text)) - {"and", "or", "not", "(", ")"}
                _MARK_FILTER[text] = (Expression.compile(text), names)
            except Exception:  # another pytest's API: every function makes its items
                pass
    return _MARK_FILTER[text]


def _always_deselected(collector, obj):
    """Whether -m deselects every item a test function could make, whatever marks its parameters or the
    repository's hooks add to them: the expression is false for the marks it has (its own, its class's, its
    module's, ...) and for every combination of the other names the expression uses. Parameters and hooks add marks;
    they never remove the function's own."""
    found = _mark_filter(collector.config)
    if found is None:
        return False
    expression, names = found
    try:
        from _pytest.mark.structures import get_unpacked_marks

        marks = {mark.name for mark in get_unpacked_marks(obj)} | {mark.name for mark in collector.iter_markers()}
    except Exception:
        return False
    unknown = sorted(names - marks)
    if len(unknown) > _MAX_UNKNOWN_MARKS:
        return False
    for bits in range(2 ** len(unknown)):
        extra = {name for k, name in enumerate(unknown) if bits >> k & 1}
        if expression.evaluate(lambda name, /, **kwargs: name in marks or name in extra):
            return False
    return True


def _makes_plain_items(collector, obj):
    """Whether making the function's items runs nothing but pytest's own parametrisation, which cannot fail: not a
    generator (pytest reports those as errors), no pytest_generate_tests but pytest's, every parametrize naming
    only the function's arguments, with as many ids as values and none computed."""
    import inspect

    if inspect.isgeneratorfunction(obj) or getattr(obj, "__test__", True) is not True:
        return False
    hooks = collector.config.hook.pytest_generate_tests.get_hookimpls()
    # pytest's own: its python plugin (a module) and its fixture manager (an object).
    owner = lambda plugin: getattr(plugin, "__name__", None) or type(plugin).__module__
    if any(not str(owner(hook.plugin)).startswith("_pytest.") for hook in hooks):
        return False
    if hasattr(collector.obj, "pytest_generate_tests") or hasattr(getattr(collector, "module", None), "pytest_generate_tests"):
        return False
    try:
        from _pytest.mark.structures import get_unpacked_marks

        arguments = set(inspect.signature(obj).parameters)
        for mark in get_unpacked_marks(obj):
            if mark.name != "parametrize":
                continue
            names = mark.args[0] if mark.args else mark.kwargs.get("argnames")
            names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names or ())
            values = list(mark.args[1] if len(mark.args) > 1 else mark.kwargs.get("argvalues", ()))
            ids = mark.kwargs.get("ids")
            if not set(names) <= arguments or callable(ids) or (ids is not None and len(list(ids)) != len(values)):
                return False
    except Exception:
        return False
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector, name, obj):
    """No items for a test function every one of whose items -m would deselect (click's 31,000 stress cases, which
    its addopts' "not stress" deselects, cost two seconds to make): the tests that run, and what is reported of
    them, are the same."""
    import inspect

    if (
        inspect.isfunction(obj)
        and collector.funcnamefilter(name)
        and _always_deselected(collector, obj)
        and _makes_plain_items(collector, obj)
    ):
        _UNMADE.append(name)
        return []
    return None


@contextlib.contextmanager
def _json_in_one_piece():
    """json.dump as coverage's JSON report calls it, encoding in one piece (json.dumps, in C) rather than streaming
    (in Python, three times slower on click's report): the same text."""
    stream = json.dump

    def dump(obj, fp, **kwargs):
        fp.write(json.dumps(obj, **kwargs))

    json.dump = dump
    try:
        yield
    finally:
        json.dump = stream


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
        try:
            from ci_runner_coverage_cache import analysis_cache
        except ImportError:  # the plugin alone (an environment made before the cache existed)
            analysis_cache = contextlib.nullcontext
        with analysis_cache(), _json_in_one_piece():
            report.json_report(outfile=out, omit=omit)
    except Exception as error:  # no data, or a broken configuration: the runner reports no coverage
        with open(f"{out}.error", "w", encoding="utf-8") as handle:
            handle.write(f"{type(error).__name__}: {error}\n")


_PARSED = {}


def _share_parsed_sources():
    """pytest parses a module again for every traceback that passes through it (its cache lives as long as one
    traceback): with click's deep stacks that is most of what a failed test costs. The same text parses to the same
    tree, so the trees are shared across tracebacks; what pytest shows is unchanged."""
    try:
        import ast
        import warnings

        from _pytest._code import code as _code
    except ImportError:
        return
    original = getattr(_code, "getstatementrange_ast", None)
    if original is None or getattr(original, "_ci_runner", False):
        return

    def getstatementrange_ast(lineno, source, assertion=False, astnode=None):
        if astnode is None:
            content = str(source)
            astnode = _PARSED.get(content)
            if astnode is None:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        astnode = ast.parse(content, "source", "exec")
                except SyntaxError:
                    return original(lineno, source, assertion, None)
                if len(_PARSED) < 256:
                    _PARSED[content] = astnode
        return original(lineno, source, assertion, astnode)

    getstatementrange_ast._ci_runner = True
    _code.getstatementrange_ast = getstatementrange_ast


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    # Last: the repository's conftests have registered their marks by then.
    worker = bool(os.environ.get("PYTEST_XDIST_WORKER"))
    if os.environ.get("CI_RUNNER_COVERAGE_JSON") and not worker:
        atexit.register(_coverage_json)
    _combine_mark_expressions(config)
    _share_parsed_sources()
    _watch_for_hang()
    if not worker:
        # The controller sees every worker's reports: only it records results.
        config.pluginmanager.register(_Recorder(config), "ci_runner_recorder")


def pytest_unconfigure(config):
    if _WORKER_COVERAGE is not None:
        _WORKER_COVERAGE.stop()
        _WORKER_COVERAGE.save()
