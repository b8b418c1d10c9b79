"""The failures ci_runner_affected carries: a test that failed the same way in the last two builds that ran it,
without its code changing, is reported from the earlier build's record instead of running again, while its code
(testmon's blocks) and the files its traceback passes through (up to the last line a frame is at) are unchanged.
The record is the earlier build's, which that build's tests could write: everything read from it is checked first.
"""

import json
import os

import ci_runner_pytest_plugin as _plugin

# Failures remembered per build, at most (their details are kilobytes each).
MAX_KEPT = 5_000


def base_failed():
    """The tests the earlier build's verdict named failed (the runner's, after its re-runs: never a flaky one)."""
    path = os.environ.get("CI_RUNNER_AFFECTED_BASE_FAILED")
    try:
        with open(path, encoding="utf-8") as handle:
            named = json.load(handle)
    except (TypeError, OSError, ValueError):
        return set()
    return {node for node in named if isinstance(node, str)} if isinstance(named, list) else set()


def usable(node, entry):
    """A recorded failure as remembered() writes it: its details (text), how often it was seen, and its frames,
    which include the test's own file."""
    if not isinstance(entry, dict) or not isinstance(entry.get("detail"), dict):
        return False
    detail, frames, seen = entry["detail"], entry.get("frames"), entry.get("seen")
    if not all(isinstance(value, str) for value in detail.values()) or not isinstance(frames, dict):
        return False
    if not isinstance(seen, int) or isinstance(seen, bool) or node.split("::", 1)[0] not in frames:
        return False
    return all(
        isinstance(name, str) and isinstance(at, list) and len(at) == 2 and isinstance(at[0], int) and isinstance(at[1], str)
        for name, at in frames.items()
    )


def carriable(base, stable):
    """The earlier build's failures reported again without running them: a test that failed the same way (same
    details, same frames) in two builds in a row without its code changing, whose build's verdict kept it failed (a
    test that passed on a re-run is flaky, never carried), whose code testmon finds unchanged (`stable`), and whose
    frames' files are the same up to the last line a frame is at (its traceback would be the same, line for line)."""
    confirmed = base_failed()
    carried = {}
    failures = base.get("failures")
    for node, entry in (failures if isinstance(failures, dict) else {}).items():
        if node not in confirmed or node not in stable or not usable(node, entry) or entry["seen"] < 2:
            continue
        if all(_plugin.prefix_digest(name, at[0]) == at[1] for name, at in entry["frames"].items()):
            carried[node] = entry
    return carried


def remembered(base, ran, carried, stable, order):
    """The failures to remember, in the order the results name them: this run's (`ran`; seen once more when the test
    failed the same way in the earlier build, its code unchanged), and the carried ones as they were."""
    earlier = base.get("failures") if isinstance(base.get("failures"), dict) else {}
    confirmed = base_failed()
    failures = {}
    for node, entry in ran.items():
        if entry["frames"] is None or entry["detail"] is None or len(failures) >= MAX_KEPT:
            continue
        old = earlier.get(node)
        # The same way twice: the earlier build's verdict kept it failed (not flaky) and its code is unchanged.
        again = (
            usable(node, old)
            and node in confirmed
            and node in stable
            and old["frames"] == entry["frames"]
            and old["detail"] == entry["detail"]
        )
        failures[node] = {**entry, "seen": min(old["seen"] + 1, 1000) if again else 1}
    failures.update(carried)
    rank = {node: k for k, node in enumerate(order)}
    return dict(sorted(failures.items(), key=lambda pair: rank.get(pair[0], len(rank))))


def in_run_order(recorder, collected, ran, carried):
    """The results' failures (the plugin's recorder) in pytest's order (the carried ones were named first), the
    first ones detailed; returns that order."""
    if not carried:
        return list(recorder.failed)
    # Files in pytest's default order (a directory's entries by name, depth first), then each file's tests as
    # collected, or (a file not collected) as the earlier build listed them.
    index = {node: k for k, node in enumerate(collected)}
    earlier = {node: k for k, node in enumerate(carried)}
    place = lambda node: (
        tuple(node.split("::", 1)[0].split("/")),
        index.get(node, len(index) + earlier.get(node, 0)),
    )
    recorder.failed[:] = sorted(recorder.failed, key=place)
    known = {node: entry["detail"] for node, entry in ran.items() if entry["detail"]}
    known.update({node: entry["detail"] for node, entry in carried.items()})
    known.update(recorder.details)
    details = {}
    for node in recorder.failed:
        if len(details) >= _plugin.DETAILED_MAX:
            break
        if node in known and node in recorder.kinds:
            details[node] = known[node]
    recorder.details = details
    return list(recorder.failed)
