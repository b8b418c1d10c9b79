"""What ci_runner_affected records of a run (CI_RUNNER_AFFECTED_OUT/lines.json) and carries from an earlier one.

A record holds, relative to the repository's root:
- "packs": every distinct list of lines or arcs, once (thousands of tests execute the same lines of a file);
- "tests": node id -> file -> executed lines, as the index in "packs" of [start, count, ...] ranges;
- "arcs": node id -> file -> executed arcs, as the index in "packs" of [from, to, from, to, ...] (only when the
  run measures branches);
- "imports": test file -> {"lines", "arcs": as above, of what importing it executed; "deps": file -> sha256 of
  what it was: the test file, every file whose code its import ran, every module its import statements named,
  every file it opened and directory it listed; "read": those it opened or listed as data};
- "session": file -> the lines (pack index) that ran before collection ended outside test files' imports
  (conftests, plugins);
- "functions": test file -> the test functions it defines;
- "files": file -> its text, to move line numbers after an edit.
"""

import difflib
import hashlib
import os
import re


def ranges(lines):
    """Sorted line numbers as [start, count, start, count, ...]."""
    out = []
    for line in sorted(lines):
        if out and out[-2] + out[-1] == line:
            out[-1] += 1
        else:
            out.extend((line, 1))
    return out


def from_ranges(packed):
    return [start + k for start, count in zip(packed[::2], packed[1::2]) for k in range(count)]


def flat_arcs(arcs):
    return [n for arc in sorted(arcs) for n in arc]


def from_flat(flat):
    return list(zip(flat[::2], flat[1::2]))


def read(path):
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            return handle.read()
    except OSError:
        return None


def digest(path):
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def listing(path):
    """The names in a directory, as one digest (None: not a directory)."""
    try:
        # Bytecode comes and goes with every run (the import system lists directories too): not part of it.
        names = sorted(n for n in os.listdir(path) if n != "__pycache__" and not n.endswith(".pyc"))
    except OSError:
        return None
    return hashlib.sha256("\0".join(names).encode("utf-8", "surrogateescape")).hexdigest()


_FINGERPRINTS = {}


def fingerprint(rootdir, name):
    """What a dependency of a test file's import was: a file's content, or a directory's names (a name ending in /).
    Taken once per run (every file is looked at before the first test runs)."""
    path = os.path.join(rootdir, name)
    if path not in _FINGERPRINTS:
        _FINGERPRINTS[path] = listing(path) if name.endswith("/") else digest(path)
    return _FINGERPRINTS[path]


def executed_lines(base, entry, name):
    """The lines of one file an earlier build's import record says the import ran (from its lines, or its arcs)."""
    packs = base.get("packs", [])
    index = entry.get("lines", {}).get(name)
    if index is not None:
        return set(from_ranges(packs[index]))
    index = entry.get("arcs", {}).get(name)
    return {n for n in packs[index] if n > 0} if index is not None else set()


def _ran_checksums(module, lines):
    """The checksums of the blocks of a testmon Module that ran: the module-level block when any line did, and each
    function body with a line that ran in it. testmon's own fingerprint stretches a body's block to the next
    statement, so the decorators of the function after it, which run at import, would count as the body's."""
    import ast

    from testmon.process_code import methods_to_checksums

    ends = {}
    for node in ast.walk(ast.parse(module.source_code)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            ends[node.body[0].lineno] = node.end_lineno
    ran = sorted(lines)
    found = []
    for block in module.blocks:
        end = ends.get(block.start, block.end)
        first = next((line for line in ran if line >= block.start), None)
        if first is not None and first <= end:
            found.append(block.code)
    return methods_to_checksums(found)


class Blocks:
    """testmon's view of a Python file: its module-level code (function bodies left out) and each function body, as
    checksums. An import that ran the same blocks of a file (its module-level code and the bodies it called) does
    the same, whatever changed in the bodies it did not run."""

    def __init__(self, rootdir):
        self.rootdir = rootdir
        self._modules = {}

    def _module(self, text):
        from testmon.process_code import Module

        if text not in self._modules:
            self._modules[text] = Module(source_code=text, ext="py")
        return self._modules[text]

    def unchanged(self, name, old_text, lines):
        """Whether the blocks holding `lines` of the file's earlier text (its module-level code whenever any line
        ran) are all still in the file."""
        new_text = read(os.path.join(self.rootdir, name))
        if old_text is None or new_text is None:
            return False
        old, new = self._module(old_text), self._module(new_text)
        if not old.blocks or not new.blocks:  # a file that does not parse
            return False
        return set(_ran_checksums(old, lines)) <= set(new.method_checksums)


def line_map(old, new):
    """Old line number -> new, for the lines an edit left as they were (None: the file is unchanged)."""
    if old == new:
        return None
    matcher = difflib.SequenceMatcher(None, old.splitlines(), new.splitlines(), autojunk=False)
    mapping = {}
    for a, b, size in matcher.get_matching_blocks():
        for k in range(size):
            mapping[a + k + 1] = b + k + 1
    return mapping


class Mover:
    """Moves an earlier run's lines and arcs (packed) to where they are in this tree; a line an edit changed is
    dropped (testmon re-runs a test that executed one), and with it every arc that touches it. None: the file is
    gone, or was not recorded."""

    def __init__(self, base, rootdir):
        self.base = base
        self.rootdir = rootdir
        self.maps = {}

    def _map(self, name):
        if name not in self.maps:
            text = read(os.path.join(self.rootdir, name))
            old = self.base["files"].get(name)
            self.maps[name] = "gone" if text is None or old is None else line_map(old, text)
        return self.maps[name]

    def lines(self, name, packed):
        mapping = self._map(name)
        if mapping is None or mapping == "gone":
            return None if mapping else packed
        return ranges(mapping[n] for n in from_ranges(packed) if n in mapping)

    def arcs(self, name, flat):
        mapping = self._map(name)
        if mapping is None or mapping == "gone":
            return None if mapping else flat

        def move(n):
            moved = mapping.get(abs(n))
            return None if moved is None else (moved if n > 0 else -moved)

        out = set()
        for a, b in from_flat(flat):
            a2, b2 = move(a), move(b)
            if a2 is not None and b2 is not None:
                out.add((a2, b2))
        return flat_arcs(out)


class Packs:
    """The "packs" table of a record being written: each distinct list once, found by the list object first (the
    carried lists are shared), then by value."""

    def __init__(self):
        self.table = []
        self._by_id = {}
        self._by_value = {}

    def ref(self, packed):
        index = self._by_id.get(id(packed))
        if index is None:
            value = tuple(packed)
            index = self._by_value.get(value)
            if index is None:
                index = len(self.table)
                self.table.append(packed)
                self._by_value[value] = index
            # The lists stay alive (in the record being written) until it is written: their ids are not reused.
            self._by_id[id(packed)] = index
        return index


class Carrier:
    """Reads an earlier record's files -> pack index maps, moved to this tree by a Mover: each distinct list is moved
    once, and every test that shares it gets the same list object."""

    def __init__(self, base, mover):
        self.packs = base.get("packs", [])
        self.mover = mover
        self._moved = {}

    def carry(self, files, kind):
        out = {}
        for name, index in files.items():
            key = (kind, name, index)
            moved = self._moved.get(key, self)
            if moved is self:
                packed = self.packs[index]
                moved = self.mover.lines(name, packed) if kind == "lines" else self.mover.arcs(name, packed)
                self._moved[key] = moved
            if moved is not None:
                out[name] = moved
        return out


class _NoHash:
    """coverage hashes every measured arc in pure Python, to name a data file after its content: the tracers here
    keep their data in memory and never name a file, and the hashing is most of their cost."""

    def update(self, value):
        pass

    def digest(self):
        return b"\0" * 16

    def hexdigest(self):
        return "0" * 32


def unhashed(cov):
    """Drops the content hash of a started Coverage's data (where this coverage keeps one), unless it names a data
    file: in-memory data, or a file whose name the run chose (only a `parallel` run's file is named by its hash)."""
    data = getattr(cov, "_data", None)
    if data is None or not hasattr(data, "_hasher"):
        return
    if getattr(data, "_no_disk", False) or getattr(data, "_our_suffix", True) is False:
        data._hasher = _NoHash()


def arcs_by_context(data, path):
    """context -> arcs of one file in a CoverageData measured with contexts."""
    found = {}
    try:
        with data._connect() as con:
            file_id = data._file_id(path)
            if file_id is None:
                return found
            query = "SELECT context.context, arc.fromno, arc.tono FROM arc, context "
            query += "WHERE arc.file_id = ? AND arc.context_id = context.id"
            with con.execute(query, [file_id]) as cursor:
                for context, fromno, tono in cursor:
                    found.setdefault(context, set()).add((fromno, tono))
        return found
    except AttributeError:  # another coverage's storage: ask context by context
        for context in data.measured_contexts():
            data.set_query_contexts([f"^{re.escape(context)}$"])
            arcs = data.arcs(path)
            if arcs:
                found[context] = set(arcs)
        data.set_query_contexts(None)
        return found
