"""Reads ./pyproject.toml for ci-runner: the [tool.ci-runner] table and the project's test extras, as JSON.

Prints {"settings": {...}, "extras": [...], "groups": [...], "installable": bool, "build_requires": [...],
"lint": <ci_runner_lint_profile.lint_profile>} or {"error": "..."}.
"""

import configparser
import json
import os
import sys
import tomllib

from ci_runner_lint_profile import lint_profile

TEST_EXTRAS = ("test", "tests", "testing", "dev")

try:
    with open("pyproject.toml", "rb") as handle:
        data = tomllib.load(handle)
except FileNotFoundError:
    data = {}
except tomllib.TOMLDecodeError as error:
    json.dump({"error": f"pyproject.toml is not valid TOML: {error}"}, sys.stdout)
    sys.exit(0)

project = data.get("project", {})
optional = project.get("optional-dependencies", {}) if isinstance(project, dict) else {}
if not optional and os.path.isfile("setup.cfg"):
    # A setuptools project declaring its extras in setup.cfg ([options.extras_require]).
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read("setup.cfg", encoding="utf-8")
        if parser.has_section("options.extras_require"):
            optional = {name: [] for name in parser.options("options.extras_require")}
    except (configparser.Error, UnicodeDecodeError):
        optional = {}
installable = (
    "project" in data or "build-system" in data or os.path.exists("setup.py") or os.path.exists("setup.cfg")
)
groups = data.get("dependency-groups", {})
build_system = data.get("build-system", {})
requires = build_system.get("requires") if isinstance(build_system, dict) else None
if not isinstance(requires, list) or not all(isinstance(item, str) for item in requires):
    # No (valid) [build-system]: pip's and uv's legacy default backend.
    requires = ["setuptools>=40.8.0"]

def _lint():
    """The lint profile, or a note of why it could not be read (a broken lint file never costs the build)."""
    try:
        return lint_profile(data)
    except Exception as error:  # RecursionError, a YAML alias bomb, a type the reader did not expect
        return {"notes": [f"the repository's lint configuration could not be read: {type(error).__name__}"]}


json.dump(
    {
        "settings": data.get("tool", {}).get("ci-runner", {}),
        "extras": [name for name in TEST_EXTRAS if isinstance(optional, dict) and name in optional],
        "groups": [name for name in TEST_EXTRAS if isinstance(groups, dict) and name in groups],
        "installable": installable,
        "build_requires": requires if installable else [],
        "lint": _lint(),
    },
    sys.stdout,
)
