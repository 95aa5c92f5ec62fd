"""Resume state of an export, saved atomically beside its output.

It records, for the output file, how many bytes are committed, and for each batch the
token of its next page (or that it is done) and how many lines it has written. Saved by
write-to-temporary, fsync and rename, so a kill at any moment leaves the old state or
the new one, never a mix. It holds pagination tokens, so it is written owner-only.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .errors import OmicsBatchRunsError

_VERSION = 1


class CheckpointError(OmicsBatchRunsError, ValueError):
    """The checkpoint cannot be used for this export."""


@dataclass
class BatchState:
    token: str | None = None
    lines: int = 0
    done: bool = False


@dataclass
class Checkpoint:
    """The state; with `path` None it is kept in memory only (an export without resume)."""

    path: Path | None
    fingerprint: str
    offset: int = 0
    batches: dict[str, BatchState] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)

    @classmethod
    def load_or_new(cls, path: Path, fingerprint: str) -> Checkpoint:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(path, fingerprint)
        except OSError as e:
            raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror}") from None
        invalid = CheckpointError(f"checkpoint {path} is not a valid checkpoint")
        try:
            data = orjson.loads(raw)
            version, mark = data["version"], data["fingerprint"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise invalid from None
        if version != _VERSION:
            raise CheckpointError(f"checkpoint {path} has unknown version {version}")
        if mark != fingerprint:
            raise CheckpointError(
                f"checkpoint {path} belongs to a different export "
                "(output, filters or page size differ); remove it or use another path"
            )
        try:
            return cls(
                path,
                fingerprint,
                offset=int(data["offset"]),
                batches={k: BatchState(**v) for k, v in data["batches"].items()},
                statuses=Counter(data["statuses"]),
                reasons=Counter(data["reasons"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise invalid from None

    @property
    def started(self) -> bool:
        return bool(self.batches) or self.offset > 0

    def save(self) -> None:
        if self.path is None:
            return
        data: dict[str, Any] = {
            "version": _VERSION,
            "fingerprint": self.fingerprint,
            "offset": self.offset,
            "batches": {
                k: {"token": v.token, "lines": v.lines, "done": v.done}
                for k, v in self.batches.items()
            },
            "statuses": self.statuses,
            "reasons": self.reasons,
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps(data))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def fingerprint(*parts: object) -> str:
    """What must not change between a run and its resumption."""
    return hashlib.sha256(orjson.dumps([str(p) for p in parts])).hexdigest()[:16]
