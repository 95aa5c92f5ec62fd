"""Resume state of an export, saved atomically beside its output.

It records what the export is (the batches asked for, the filters, the output: `Job`), how
many bytes of the output are committed, and for each batch the token of its next page (or
that it is done) and how many lines it has written. Saved by write-to-temporary, fsync,
rename and fsync of the directory, so a kill at any moment leaves the old state or the new
one, never a mix. It holds pagination tokens, so it is written owner-only.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import anyio.to_thread
import orjson

from .errors import OmicsBatchRunsError

_VERSION = 2


class CheckpointError(OmicsBatchRunsError, ValueError):
    """The checkpoint cannot be used for this export: found before any request."""


class CheckpointWriteError(OmicsBatchRunsError):
    """The checkpoint could not be saved (a full disk, ...); the last saved one stands."""


@dataclass(frozen=True)
class Job:
    """What shapes an export's output: a checkpoint serves only the job that wrote it."""

    output: str
    selection: str  # the batch ids asked for (a digest), or the ListBatch filter
    filters: dict[str, str]
    page_size: int

    @classmethod
    def of(
        cls,
        output: str,
        batch_ids: Sequence[str],
        discover: dict[str, str] | None,
        filters: dict[str, str],
        page_size: int,
    ) -> Job:
        if discover is not None:
            selection = "all batches" + "".join(f", {k}={v}" for k, v in sorted(discover.items()))
        else:
            ids = sorted(set(batch_ids), key=int)
            digest = hashlib.sha256(" ".join(ids).encode()).hexdigest()[:16]
            selection = f"{len(ids)} batch ids ({digest})"
        return cls(output, selection, filters, page_size)


_NAMES = {
    "output": "the output",
    "selection": "the batches",
    "filters": "the run filters",
    "page_size": "the page size",
}


@dataclass
class BatchState:
    token: str | None = None
    lines: int = 0
    done: bool = False


@dataclass
class Checkpoint:
    """The state; with `path` None it is kept in memory only (an export without resume)."""

    path: Path | None
    job: Job
    offset: int = 0
    batches: dict[str, BatchState] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)

    @classmethod
    def load_or_new(cls, path: Path, job: Job) -> Checkpoint:
        if not str(path) or path.is_dir() or str(path).endswith(("/", os.sep)):
            raise CheckpointError(f"--checkpoint {str(path)!r} is not a file name")
        if path.exists() and not path.is_file():  # a FIFO would block the read for ever
            raise CheckpointError(f"--checkpoint {path} is not a regular file")
        _check_writable(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(path, job)
        except OSError as e:
            raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror}") from None
        invalid = CheckpointError(f"checkpoint {path} is not a checkpoint of this program")
        try:
            data = orjson.loads(raw)
            version = data["version"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise invalid from None
        if version != _VERSION:
            raise CheckpointError(f"checkpoint {path} has version {version}, not {_VERSION}")
        try:
            saved = Job(**data["job"])
            state = cls(
                path,
                saved,
                offset=int(data["offset"]),
                batches={k: BatchState(**v) for k, v in data["batches"].items()},
                statuses=Counter(data["statuses"]),
                reasons=Counter(data["reasons"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise invalid from None
        differ = [n for n in _NAMES if getattr(saved, n) != getattr(job, n)]
        if differ:
            what = "; ".join(
                f"{_NAMES[n]}: {getattr(saved, n)} there, {getattr(job, n)} here" for n in differ
            )
            raise CheckpointError(
                f"checkpoint {path} belongs to another export ({what}); "
                "run that export, or use another checkpoint"
            )
        return state

    @property
    def started(self) -> bool:
        return bool(self.batches) or self.offset > 0

    async def save(self) -> None:
        if self.path is not None:
            data = orjson.dumps(
                {
                    "version": _VERSION,
                    "job": asdict(self.job),
                    "offset": self.offset,
                    "batches": {k: asdict(v) for k, v in self.batches.items()},
                    "statuses": self.statuses,
                    "reasons": self.reasons,
                }
            )
            await anyio.to_thread.run_sync(_replace, self.path, data)


def _check_writable(path: Path) -> None:
    """The checkpoint's directory must take a new file, found before any request."""
    if not path.parent.is_dir():
        raise CheckpointError(f"checkpoint directory {path.parent} does not exist")
    probe = path.with_name(path.name + ".tmp")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT, 0o600))
        os.unlink(probe)
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror}") from None


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)  # the rename itself must survive a crash
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointWriteError(f"cannot save checkpoint {path}: {e.strerror}") from None


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
