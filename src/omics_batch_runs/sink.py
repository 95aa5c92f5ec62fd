"""JSON lines out: stdout, a file, a gzip file, a device or a pipe, committed in whole lines.

`open_sink` opens the target before any request, so an output that cannot be written is
found first. `commit()` ends what was written at a line (and gzip member) boundary and
returns the file's size; for a regular file that an export resumes, it also makes the data
durable (fsync, in a thread), so a checkpoint saved after it never claims a line that is
not on disk. Closing a regular file cuts it back to the last commit (a failed write, an
interrupt), and a resumed export to its checkpoint's, so a line is never half there. A gzip
file is a series of gzip members, one per commit.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys
import zlib
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path
from typing import Any, BinaryIO

import anyio.to_thread
import orjson

from .errors import OmicsBatchRunsError


class OutputError(OmicsBatchRunsError):
    """The output cannot be opened or written (a full disk, a file size limit, ...)."""


class OutputClosed(OmicsBatchRunsError):
    """The reader of the output (a pipe, `| head`) has gone: there is no one to write for."""


class OutputRefused(OmicsBatchRunsError, ValueError):
    """The output cannot serve this export: found before any request."""


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


class JsonLinesSink:
    """Writes runs as JSON lines to an open binary file."""

    def __init__(
        self,
        file: BinaryIO,
        name: str,
        *,
        gzip: bool,
        durable: bool,
        owned: bool = True,
        committed: int | None = None,
    ) -> None:
        self.name = name
        self._owned = owned  # stdout is flushed, never closed
        self._file = file
        self._gzip = gzip
        self._durable = durable
        self._committed = committed  # a regular file's size at the last commit, else None
        self._zip: Any = None
        self.broken = False  # a write failed: nothing more is written or committed

    def _guard(self, error: OSError) -> Exception:
        self.broken = True
        if error.errno == errno.EPIPE:
            return OutputClosed(f"the reader of {self.name} has closed it")
        return OutputError(f"cannot write {self.name}: {_reason(error)}")

    def write(self, runs: Iterable[dict[str, Any]]) -> int:
        """Write runs, one line each; returns how many."""
        lines = [orjson.dumps(run, option=orjson.OPT_APPEND_NEWLINE) for run in runs]
        data = b"".join(lines)
        if self._gzip:
            if self._zip is None:
                self._zip = zlib.compressobj(6, zlib.DEFLATED, 31)
            data = self._zip.compress(data)
        try:
            self._file.write(data)
        except OSError as e:
            raise self._guard(e) from None
        return len(lines)

    async def commit(self) -> int:
        """End a gzip member, flush, and (where it means something) fsync; returns the size."""
        if self.broken:
            raise OutputError(f"{self.name} was not written in full")
        try:
            if self._zip is not None:
                self._file.write(self._zip.flush(zlib.Z_FINISH))
                self._zip = None
            self._file.flush()
            if self._committed is not None:
                self._committed = self._file.tell()
            if self._durable:
                await anyio.to_thread.run_sync(os.fsync, self._file.fileno())
                return self._file.tell()
        except OSError as e:
            raise self._guard(e) from None
        return 0

    def close(self) -> None:
        """Close without committing. A regular file is cut back to its last commit, so that
        it ends on a whole line (and gzip member), whatever stopped the writing."""
        committed = self._committed if self._owned else None
        keep = None if committed is None else os.dup(self._file.fileno())  # and its lock
        with suppress(OSError):  # its buffer could not be written: it was never committed
            self._file.close() if self._owned else self._file.flush()
        if keep is not None and committed is not None:
            with suppress(OSError):
                os.ftruncate(keep, committed)
            os.close(keep)


_NOT_REGULAR = "--checkpoint needs a regular output file; {} cannot be truncated"


def open_sink(output: str, *, resume_at: int | None, checkpoint: bool) -> JsonLinesSink:
    """Open `output` ('-' is stdout) for an export; raises OutputRefused if it cannot serve.

    A regular file is locked (a second export on it is refused) and truncated to
    `resume_at` (0 if new); with a checkpoint, it must be one: only a file can be truncated.
    """
    if output == "-":
        if checkpoint:
            raise OutputRefused("--checkpoint needs an output file (-o PATH): stdout cannot resume")
        if sys.stdout is None:
            raise OutputRefused("standard output is closed; give -o PATH")
        return JsonLinesSink(
            sys.stdout.buffer, "standard output", gzip=False, durable=False, owned=False
        )
    if not output:
        raise OutputRefused("-o must name a file, or - for standard output")
    if output.endswith(("/", os.sep)) or Path(output).is_dir():
        raise OutputRefused(f"output {output} is a directory; give a file name")
    path = Path(output)
    suffix = path.suffix.lower()
    if suffix == ".zst":
        raise OutputRefused("zstd output is not supported; use .gz or plain .jsonl")
    if resume_at is not None and not path.exists():
        raise OutputRefused(f"the checkpoint has lines in {output}, which is gone")
    if checkpoint and path.exists() and not path.is_file():
        # Said before opening it: opening a FIFO waits for a reader, for ever if none comes.
        raise OutputRefused(_NOT_REGULAR.format(output))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o666)  # truncated once it is ours
    except OSError as e:
        raise OutputRefused(f"cannot write output {output}: {_reason(e)}") from None
    file = os.fdopen(fd, "wb")
    regular = stat.S_ISREG(os.fstat(fd).st_mode)
    try:
        if checkpoint and not regular:
            raise OutputRefused(_NOT_REGULAR.format(output))
        if regular:
            _take_over(file, output, resume_at or 0)
    except BaseException:
        file.close()
        raise
    return JsonLinesSink(
        file,
        output,
        gzip=suffix == ".gz",
        durable=checkpoint and regular,
        committed=(resume_at or 0) if regular else None,
    )


def _take_over(file: BinaryIO, output: str, offset: int) -> None:
    """Lock an output file (a second export on it is refused, resumable or not) and cut it
    back to its committed size (0 for a new export)."""
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OutputRefused(f"{output} is being written by another export") from None
    size = os.fstat(file.fileno()).st_size
    if size < offset:
        raise OutputRefused(
            f"{output} holds {size:,} bytes, fewer than the {offset:,} its checkpoint "
            "committed: it was changed by something else; remove both to start again"
        )
    file.truncate(offset)
    file.seek(offset)
