"""coverage.py's per-file analysis (statements, excluded lines, arcs, regions), kept between a repository's builds
by ci-runner, so a report re-parses only the files that changed.

Used by ci_runner_pytest_plugin while it writes coverage's JSON report. An entry is keyed by the file's text, the
coverage version, the Python version and the exclusion rules, and holds exactly the parser's state after
`parse_source()` and `arcs()`: a report from it equals one from a fresh parse. The runner copies the repository's
kept entries in (CI_RUNNER_COVERAGE_CACHE_IN) and keeps what the run wrote (CI_RUNNER_COVERAGE_CACHE_OUT): the
entries of the files this report read, so the file never outgrows the project. JSON, never pickle: an entry is
data, not code.
"""

import collections
import contextlib
import hashlib
import json
import os
import sys

import coverage
from coverage import python as _python
from coverage.parser import PythonParser
from coverage.plugin import CodeRegion

_VERSION = 1
_SETS = ("statements", "excluded", "raw_statements", "raw_excluded", "raw_docstrings")


def _key(text, exclude):
    digest = hashlib.sha256()
    for part in (coverage.__version__, "%d.%d" % sys.version_info[:2], exclude or "", text):
        digest.update(part.encode("utf-8", "surrogateescape"))
        digest.update(b"\0")
    return digest.hexdigest()


def _pairs(mapping):
    return [[a, b] for a, b in mapping.items()]


def _entry(parser, regions):
    entry = {name: sorted(getattr(parser, name)) for name in _SETS}
    entry["multiline"] = _pairs(parser.multiline_map)
    entry["arcs"] = sorted(parser._all_arcs)
    entry["fragments"] = [
        [start, end, [list(pair) for pair in pairs]]
        for (start, end), pairs in parser._missing_arc_fragments.items()
    ]
    entry["with_jumps"] = [[a, b, None if to is None else list(to)] for (a, b), to in parser._with_jump_fixers.items()]
    if regions is not None:
        entry["regions"] = [[r.kind, r.name, r.start, sorted(r.lines)] for r in regions]
    return entry


def _restore(parser, entry):
    for name in _SETS:
        setattr(parser, name, set(entry[name]))
    parser.multiline_map = {a: b for a, b in entry["multiline"]}
    parser._all_arcs = {(a, b) for a, b in entry["arcs"]}
    fragments = parser._missing_arc_fragments = collections.defaultdict(list)
    for start, end, pairs in entry["fragments"]:
        fragments[(start, end)] = [tuple(pair) for pair in pairs]
    parser._with_jump_fixers = {(a, b): None if to is None else tuple(to) for a, b, to in entry["with_jumps"]}


def _supported():
    """Whether this coverage's parser and file reporter are the ones the cache knows (else it stays out)."""
    if not isinstance(getattr(_python.PythonFileReporter, "parser", None), property):
        return False
    if not hasattr(_python.PythonFileReporter, "code_regions"):
        return False
    try:
        probe = PythonParser(text="if x:\n    y = 1\n", exclude="pragma")
        probe.parse_source()
        probe.arcs()
        _restore(probe, _entry(probe, None))
        return True
    except Exception:
        return False


class _Cache:
    def __init__(self, entries):
        self.entries = entries
        self.used = {}
        self.hits = 0
        self.misses = 0


@contextlib.contextmanager
def analysis_cache():
    """Within: coverage's Python file reporters take their analysis from the kept entries, and record new ones."""
    source = os.environ.get("CI_RUNNER_COVERAGE_CACHE_IN")
    target = os.environ.get("CI_RUNNER_COVERAGE_CACHE_OUT")
    if not target or not _supported():
        yield None
        return
    entries = {}
    if source:
        try:
            with open(source, encoding="utf-8") as handle:
                kept = json.load(handle)
            if kept.get("version") == _VERSION and isinstance(kept.get("entries"), dict):
                entries = kept["entries"]
        except (OSError, ValueError, AttributeError):
            entries = {}
    cache = _Cache(entries)
    cls = _python.PythonFileReporter
    original_parser, original_regions = cls.parser, cls.code_regions

    def parser(self):
        if self._parser is None:
            made = PythonParser(filename=self.filename, exclude=self.coverage._exclude_regex("exclude"))
            key = _key(made.text, made.exclude)
            entry = cache.entries.get(key)
            if entry is not None:
                try:
                    _restore(made, entry)
                    cache.hits += 1
                except (KeyError, TypeError, ValueError):
                    entry = None
            if entry is None:
                made.parse_source()
                made.arcs()
                cache.misses += 1
                entry = _entry(made, None)
            self._parser = made
            self._ci_runner_key = key
            cache.used[key] = entry
        return self._parser

    def code_regions(self):
        parsed = self.parser
        entry = cache.used.get(getattr(self, "_ci_runner_key", None))
        if entry is None:
            return original_regions(self)
        if "regions" not in entry:
            regions = list(original_regions(self))
            entry["regions"] = _entry(parsed, regions)["regions"]
            return regions
        return [CodeRegion(kind=k, name=n, start=s, lines=set(lines)) for k, n, s, lines in entry["regions"]]

    cls.parser = property(parser)
    cls.code_regions = code_regions
    try:
        yield cache
    finally:
        cls.parser, cls.code_regions = original_parser, original_regions
        with open(target, "w", encoding="utf-8") as handle:
            # In one piece: json.dump to a file encodes in Python, json.dumps in C (a third of a second on click).
            handle.write(json.dumps({"version": _VERSION, "entries": cache.used}, separators=(",", ":")))
        with open(f"{target}.stats", "w", encoding="utf-8") as handle:
            json.dump({"hits": cache.hits, "misses": cache.misses}, handle)
