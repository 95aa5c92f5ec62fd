"""JSON lines out: stdout, a file, or a gzip file, committed in whole lines.

`commit()` makes everything written so far durable and returns the file's size; a resumed
export truncates the file back to the last committed size, so a line is never half there.
A gzip file is a series of gzip members, one per commit: gzip readers read them as one.
"""

from __future__ import annotations

import os
import sys
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import orjson


class JsonLinesSink:
    """Writes runs as JSON lines. `path` None means standard output."""

    def __init__(self, path: Path | None, *, resume_at: int | None = None) -> None:
        self.path = path
        self._gzip = path is not None and path.suffix == ".gz"
        self._zip: Any = None
        self._file: BinaryIO
        if path is None:
            self._file = sys.stdout.buffer
        elif resume_at is None:
            self._file = open(path, "wb")  # noqa: SIM115 - closed in close()
        else:
            self._file = open(path, "r+b")  # noqa: SIM115
            self._file.truncate(resume_at)
            self._file.seek(resume_at)

    def write(self, runs: Iterable[dict[str, Any]]) -> int:
        """Write runs, one line each; returns how many."""
        lines = [orjson.dumps(run, option=orjson.OPT_APPEND_NEWLINE) for run in runs]
        data = b"".join(lines)
        if self._gzip:
            if self._zip is None:
                self._zip = zlib.compressobj(6, zlib.DEFLATED, 31)
            data = self._zip.compress(data)
        self._file.write(data)
        return len(lines)

    def commit(self) -> int:
        """Flush to disk at a line (and gzip member) boundary; returns the size so far."""
        if self._zip is not None:
            self._file.write(self._zip.flush(zlib.Z_FINISH))
            self._zip = None
        self._file.flush()
        if self.path is None:
            return 0
        os.fsync(self._file.fileno())
        return self._file.tell()

    def close(self) -> int:
        """Commit and close; returns the committed size, as `commit` does."""
        size = self.commit()
        if self.path is not None:
            self._file.close()
        return size
