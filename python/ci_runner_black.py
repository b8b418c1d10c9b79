"""`black` as ci-runner's lint stage runs it: black's own command line, file discovery, configuration and cache, plus a
memory of the files black would reformat, by content.

black caches only the files it leaves unchanged, so a file it would reformat is formatted again on every run; on a
real project a handful of such files are most of a warm run. This driver remembers, per black mode, the digest of
each file black said it would reformat (its content and its suffix, which selects the .pyi rules), in the JSON file
named by CI_RUNNER_BLACK_VERDICTS, and answers "would reformat" for such a file, unchanged, without formatting it
again. Only the files of this run are kept, so the memory stays the size of the repository. Failures are never
remembered: a file black cannot format is tried again. Output and exit status are black's own.
"""

import hashlib
import json
import os
import sys

import black

try:  # black's internals the memory hooks into (22.12 and later); an older pinned black runs as it is
    import black.concurrency
    from black.report import Changed, Report

    _HOOKABLE = callable(getattr(black.concurrency, "reformat_many", None))
except ImportError:
    _HOOKABLE = False

_VERDICTS = os.environ.get("CI_RUNNER_BLACK_VERDICTS")
_known = {}
_seen = {}
_mode = [None]
_answered = [0]


def _load():
    try:
        with open(_VERDICTS, encoding="utf-8") as file:
            data = json.load(file)
        if data.get("black") != black.__version__:
            return
        for mode, digests in data["modes"].items():
            _known[str(mode)] = {str(digest) for digest in digests}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass


def _save():
    if not _VERDICTS or _mode[0] is None:
        return
    data = {"black": black.__version__, "modes": {mode: sorted(digests) for mode, digests in _seen.items()}}
    staging = f"{_VERDICTS}.tmp"
    try:
        with open(staging, "w", encoding="utf-8") as file:
            json.dump(data, file)
        os.replace(staging, _VERDICTS)
    except OSError as error:
        print(f"ci-runner: black's verdicts not kept: {error}", file=sys.stderr)


def _digest(src):
    with open(src, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest() + src.suffix


_black_done = Report.done if _HOOKABLE else None


def _done(self, src, changed):
    if changed is Changed.YES and _mode[0] is not None:
        try:
            _seen.setdefault(_mode[0], set()).add(_digest(src))
        except OSError:
            pass
    _black_done(self, src, changed)


_black_reformat_many = black.concurrency.reformat_many if _HOOKABLE else None


def _reformat_many(sources, fast, write_back, mode, report, workers, *args, **kwargs):
    _mode[0] = mode.get_cache_key()
    known = _known.get(_mode[0], set()) if write_back is black.WriteBack.CHECK else set()
    rest = set()
    for src in sorted(sources):
        try:
            remembered = _digest(src) in known
        except OSError:
            remembered = False
        if remembered:
            _answered[0] += 1
            report.done(src, Changed.YES)
        else:
            rest.add(src)
    if not rest:
        return
    # One file left (a one-file commit): formatted in this process, without starting a pool of workers.
    _black_reformat_many(rest, fast, write_back, mode, report, 1 if len(rest) == 1 else workers, *args, **kwargs)


if _HOOKABLE:
    Report.done = _done
    black.concurrency.reformat_many = _reformat_many

if __name__ == "__main__":
    _load()
    try:
        black.patched_main()
    finally:
        _save()
        if _answered[0]:
            print(
                f"ci-runner: {_answered[0]} file(s) black would reformat, unchanged since an earlier build, "
                "not formatted again",
                file=sys.stderr,
            )
