"""What a repository says about its own lint, for ci-runner: the formatter it uses and the ruff/black versions it pins.

Read from the repository's own files in the build's sandbox (they are the repository's): `.pre-commit-config.yaml`,
`pyproject.toml` (already parsed by the caller), `ruff.toml` / `.ruff.toml`, and its development requirement files.

`lint_profile(pyproject)` returns
    {"formatter": {"tool": "ruff"|"black", "reason": "..."},
     "pins": {"ruff": {"version": "0.15.9", "source": "..."}, "black": {...}},
     "notes": ["..."], "ruff_configured": bool}
Nothing here installs or runs anything: the runner decides what to do with a pin.
"""

import re
import tomllib

# A version the runner will install: an exact release, never a range, a URL or an option.
_VERSION = re.compile(r"^v?(\d+(?:\.\d+){1,3}(?:(?:a|b|rc)\d+)?(?:\.post\d+)?)$")
# `ruff==0.15.9`, `black[jupyter] == 24.1.0 ; python_version >= "3.9"`: an exact pin of ruff or black.
_EXACT_PIN = re.compile(r"^\s*(ruff|black)\s*(?:\[[^\]]*\])?\s*==\s*([^\s;,]+)\s*(?:;.*)?$", re.IGNORECASE)
# pre-commit's own `rev: <sha>  # frozen: v0.15.9` (what `pre-commit autoupdate --freeze` writes).
_FROZEN = re.compile(r"""^\s*rev:\s*['"]?([0-9a-fA-F]{7,40})['"]?\s*#\s*frozen:\s*(\S+)""")
# The hooks' repositories, by the end of their URL.
_HOOK_REPOS = {"ruff-pre-commit": "ruff", "black": "black", "black-pre-commit-mirror": "black"}
_RUFF_FORMAT_HOOKS = {"ruff-format"}
_BLACK_HOOKS = {"black", "black-jupyter"}
_DEV_EXTRAS = ("dev", "test", "tests", "testing", "lint", "linting", "style")
_REQUIREMENT_FILES = (
    "requirements-dev.txt",
    "requirements-lint.txt",
    "requirements/dev.txt",
    "requirements/lint.txt",
)
_MAX_FILE = 1024 * 1024
_MAX_NOTES = 10
_MAX_TEXT = 200


def _short(text):
    text = str(text)
    return text if len(text) <= _MAX_TEXT else f"{text[:_MAX_TEXT]}…"


def _read_text(path):
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_FILE + 1)
    except OSError:
        return None
    if len(data) > _MAX_FILE:
        return None
    return data.decode("utf-8", "replace")


def _pre_commit(notes):
    """The hooks of .pre-commit-config.yaml: [(tool or None, rev, hook ids)], [] when absent or unreadable."""
    text = _read_text(".pre-commit-config.yaml")
    if text is None:
        return [], {}
    try:
        import yaml

        data = yaml.safe_load(text)
    except Exception as error:  # a broken file is the repository's: noted, and read as absent
        notes.append(f".pre-commit-config.yaml is not valid YAML: {str(error).splitlines()[0]}")
        return [], {}
    frozen = {}
    for line in text.splitlines():
        match = _FROZEN.match(line)
        if match:
            frozen[match.group(1)] = match.group(2)
    repos = data.get("repos") if isinstance(data, dict) else None
    hooks = []
    for repo in repos if isinstance(repos, list) else []:
        if not isinstance(repo, dict):
            continue
        url = repo.get("repo")
        url = url.rstrip("/") if isinstance(url, str) else ""
        tool = _HOOK_REPOS.get(url.rsplit("/", 1)[-1].removesuffix(".git")) if url != "local" else None
        ids = []
        hook_list = repo.get("hooks")
        for hook in hook_list if isinstance(hook_list, list) else []:
            if isinstance(hook, dict) and isinstance(hook.get("id"), str):
                ids.append(hook["id"])
                entry = str(hook.get("entry", ""))
                if url == "local" and re.match(r"^(python -m )?ruff format\b", entry):
                    ids.append("ruff-format")
                if url == "local" and re.match(r"^(python -m )?black\b", entry):
                    ids.append("black")
        rev = repo.get("rev")
        hooks.append((tool, rev if isinstance(rev, str) else "", ids))
    return hooks, frozen


def _toml(path):
    text = _read_text(path)
    if text is None:
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None


def _requirement_lines(pyproject):
    """(where, requirement) for the repository's development requirements."""
    groups = pyproject.get("dependency-groups", {})
    for name, items in groups.items() if isinstance(groups, dict) else []:
        for item in items if isinstance(items, list) else []:
            if isinstance(item, str):
                yield f"pyproject.toml [dependency-groups] {name}", item
    project = pyproject.get("project", {})
    optional = project.get("optional-dependencies", {}) if isinstance(project, dict) else {}
    for name in _DEV_EXTRAS:
        items = optional.get(name) if isinstance(optional, dict) else None
        for item in items if isinstance(items, list) else []:
            if isinstance(item, str):
                yield f"pyproject.toml [project.optional-dependencies] {name}", item
    for path in _REQUIREMENT_FILES:
        text = _read_text(path)
        for line in (text or "").splitlines():
            # pip-compile's `black==24.1.0 \` (hashes on the next lines) is the same pin.
            yield path, line.split(" #", 1)[0].rstrip().rstrip("\\")


def lint_profile(pyproject):
    notes = []
    pins = {}
    hooks, frozen = _pre_commit(notes)

    # Pins: pre-commit's rev first (what pre-commit.ci runs), then exact pins of the development requirements.
    for tool, rev, _ids in hooks:
        if tool is None or tool in pins:
            continue
        tag = frozen.get(rev, rev)
        match = _VERSION.match(tag)
        if match:
            how = f"rev {rev}" if tag == rev else f"rev {rev[:12]}… # frozen: {tag}"
            pins[tool] = {"version": match.group(1), "source": f".pre-commit-config.yaml ({_short(how)})"}
        else:
            notes.append(f".pre-commit-config.yaml pins {tool} at rev {_short(rev)!r}, which is not an exact version")
    for where, requirement in _requirement_lines(pyproject):
        match = _EXACT_PIN.match(requirement)
        if not match:
            continue
        tool = match.group(1).lower()
        if tool in pins:
            continue
        version = _VERSION.match(match.group(2))
        if version and not match.group(2).startswith("v"):
            pins[tool] = {"version": version.group(1), "source": f"{where} ({_short(requirement.strip())})"}
        elif len(notes) < _MAX_NOTES:
            notes.append(f"{where}: {_short(requirement.strip())!r} is not an exact version")

    # The formatter: a ruff-format hook or ruff's [format] settings, then a black hook or [tool.black], else black.
    ids = {hook_id for _tool, _rev, hook_ids in hooks for hook_id in hook_ids}
    tool_table = pyproject.get("tool", {}) if isinstance(pyproject.get("tool"), dict) else {}
    ruff_table = tool_table.get("ruff", {}) if isinstance(tool_table.get("ruff"), dict) else {}
    ruff_files = {path: _toml(path) for path in ("ruff.toml", ".ruff.toml")}
    ruff_configured = "ruff" in tool_table or any(table is not None for table in ruff_files.values())
    formatter = None
    if ids & _RUFF_FORMAT_HOOKS:
        formatter = {"tool": "ruff", "reason": "pre-commit hook ruff-format"}
    elif "format" in ruff_table:
        formatter = {"tool": "ruff", "reason": "[tool.ruff.format] in pyproject.toml"}
    else:
        for path, table in ruff_files.items():
            if isinstance(table, dict) and "format" in table:
                formatter = {"tool": "ruff", "reason": f"[format] in {path}"}
                break
    if formatter is None:
        black_hook = sorted(ids & _BLACK_HOOKS)
        if black_hook:
            formatter = {"tool": "black", "reason": f"pre-commit hook {black_hook[0]}"}
        elif "black" in tool_table:
            formatter = {"tool": "black", "reason": "[tool.black] in pyproject.toml"}
        else:
            formatter = {"tool": "black", "reason": "the runner's default: the repository names no formatter"}
    return {"formatter": formatter, "pins": pins, "notes": notes[:_MAX_NOTES], "ruff_configured": ruff_configured}
