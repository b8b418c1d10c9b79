"""pytest plugin loaded by ci-runner: records exact node ids of failed and errored tests.

Written to the JSON file named by CI_RUNNER_PYTEST_RESULTS, so the runner never scrapes pytest's text output.
"""

import json
import os


class _Recorder:
    def __init__(self):
        self.failed = []
        self.passed = 0
        self.skipped = 0
        self.collected = 0

    def _add(self, nodeid):
        if nodeid not in self.failed:
            self.failed.append(nodeid)

    def pytest_collectreport(self, report):
        if report.failed:
            self._add(report.nodeid or "<collection>")

    def pytest_collection_finish(self, session):
        self.collected = len(session.items)

    def pytest_runtest_logreport(self, report):
        if report.failed:
            self._add(report.nodeid)
        elif report.when == "call" and report.passed:
            self.passed += 1
        elif report.skipped and report.when in ("setup", "call"):
            self.skipped += 1

    def pytest_sessionfinish(self, session, exitstatus):
        path = os.environ.get("CI_RUNNER_PYTEST_RESULTS")
        if not path:
            return
        ran = self.passed + len([n for n in self.failed if "::" in n])
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(
                {
                    "exit_status": int(exitstatus),
                    "collected": self.collected,
                    "ran": ran,
                    "passed": self.passed,
                    "skipped": self.skipped,
                    "failed": self.failed,
                },
                handle,
            )


def pytest_configure(config):
    config.pluginmanager.register(_Recorder(), "ci_runner_recorder")
