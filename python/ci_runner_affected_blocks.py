"""testmon's blocks of a Python file, remembered by the file's content from one build of a lineage to the next.

testmon cuts every Python file it fingerprints into blocks (its module-level code with the function bodies left
out, and each function body) by walking the file's syntax tree, in every run: on click, a third of a second for the
dozen files an affected run touches. A file's blocks depend on its content alone, so each run records those it used
(by testmon's own SHA-1 of the content) and the next run of the lineage takes them back instead of parsing again.
A block is remembered with its checksum (testmon's CRC of the block's code) in place of the code it was computed
from: testmon only ever checksums that code.
"""

from testmon import process_code as _process_code
from testmon import testmon_core as _testmon_core

_checksums = _process_code.methods_to_checksums
_compute = _process_code.Module.blocks.fget


def _methods_to_checksums(blocks):
    """testmon's methods_to_checksums, a remembered block's checksum passed as it is."""
    if all(isinstance(block, str) for block in blocks):
        return _checksums(blocks)
    return [block if isinstance(block, int) else _checksums([block])[0] for block in blocks]


def _line(value):
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value < 2**31


def _usable(entry):
    """Blocks as record() writes them: lines in order, checksums as testmon's (signed 32-bit). The record is the
    earlier build's, which that build's tests could write."""
    return isinstance(entry, list) and all(
        isinstance(block, list)
        and len(block) == 4
        and _line(block[0])
        and _line(block[1])
        and block[0] <= block[1]
        and isinstance(block[2], int)
        and not isinstance(block[2], bool)
        and -(2**31) <= block[2] < 2**31
        and isinstance(block[3], str)
        for block in entry
    )


class BlockMemory:
    """The blocks a run used, from the earlier build's record where it has them."""

    def __init__(self):
        self.earlier = lambda: {}
        self.known = None
        self.used = {}

    def _known(self):
        if self.known is None:
            found = self.earlier().get("blocks")
            self.known = found if isinstance(found, dict) else {}
        return self.known

    def install(self, earlier):
        """Serves testmon's Module.blocks from `earlier()` (the earlier build's record, read when first needed)."""
        self.earlier = earlier
        memory = self

        def blocks(module):
            if module._blocks is None and module.ext == "py":
                entry = memory._known().get(module.fs_fsha)
                # Anything else is computed, as without a memory.
                if _usable(entry):
                    module._blocks = [
                        _process_code.Block(start, end, code=checksum, name=name)
                        for start, end, checksum, name in entry
                    ]
            found = _compute(module)
            if module.ext == "py" and module.fs_fsha:
                memory.used[module.fs_fsha] = found
            return found

        _process_code.Module.blocks = property(blocks)
        _process_code.methods_to_checksums = _methods_to_checksums
        _testmon_core.methods_to_checksums = _methods_to_checksums

    def record(self, paths):
        """The blocks of the files at `paths` as they are now, by content, as the next build takes them back: those
        this run used, and the earlier build's for the files this run did not need."""
        current = set()
        for path in paths:
            try:
                with open(path, "rb") as handle:
                    current.add(_process_code.bytes_to_string_and_fsha(handle.read())[1])
            except OSError:
                pass
        kept = {fsha: entry for fsha, entry in self._known().items() if fsha in current and _usable(entry)}
        for fsha, found in self.used.items():
            if fsha in current:
                kept[fsha] = [
                    [block.start, block.end, _methods_to_checksums([block.code])[0], block.name] for block in found
                ]
        return kept
