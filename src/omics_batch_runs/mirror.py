"""The mirror: one SQLite file (standard library, WAL) holding every batch and run seen.

It is its own checkpoint. Each page's rows and its batch's next token are written in one
transaction, and a batch's listing is marked complete in the transaction of its last page,
so a kill at any moment leaves either all of a page or none of it, never a duplicate (rows
are keyed by batch and runSettingId) and never a half-listed batch marked complete.

Schema (stable; `meta.schema_version` says which):

- `meta(key, value)`: `schema_version`, `region`, `account` (learnt from ARNs),
  `batches_listed` (how many batches the last full ListBatch scan found).
- `batches`: `id`, `name`, `status`, `total_runs`, `workflow_id`, `created_at` (as ListBatch
  or GetBatch said), `get_batch` (GetBatch's answer as JSON, where fetched), `first_seen`,
  `last_seen` (upstream), `last_listed` (its run list last read to the end),
  `listed_status` and `listed_total` (status and totalRuns at that listing), `deleted`
  (1: gone upstream; its rows are kept), `next_token` (a listing under way), `last_token`
  (the token of the last page read: a growing batch goes on from there).
- `runs`: keyed by (`batch_id`, `run_setting_id`): `run_id`, `run_internal_uuid`,
  `run_arn`, `submission_status`, `submission_failure_reason`, `submission_failure_message`,
  `first_seen`, `last_changed`.
- `executions` (with `sync --run-status`): keyed by `run_id` (join it to `runs.run_id`):
  `batch_id`, `status` (ListRuns' execution status), `name`, `workflow_id`,
  `creation_time`, `start_time`, `stop_time`, `item` (ListRuns' item as JSON),
  `first_seen`, `last_changed`; and `batches.executions_final` (1: every run has ended).

Times are ISO 8601 UTC text.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from .errors import OmicsBatchRunsError

SCHEMA_VERSION = 1
_LOCK_WAIT = 2.0  # seconds a second sync waits for the first before it gives up

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE batches (
    id TEXT PRIMARY KEY,
    name TEXT,
    status TEXT,
    total_runs INTEGER,
    workflow_id TEXT,
    created_at TEXT,
    get_batch TEXT,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    last_listed TEXT,
    listed_status TEXT,
    listed_total INTEGER,
    deleted INTEGER NOT NULL DEFAULT 0,
    next_token TEXT,
    last_token TEXT,
    executions_final INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE runs (
    batch_id TEXT NOT NULL REFERENCES batches (id),
    run_setting_id TEXT NOT NULL,
    run_id TEXT,
    run_internal_uuid TEXT,
    run_arn TEXT,
    submission_status TEXT,
    submission_failure_reason TEXT,
    submission_failure_message TEXT,
    first_seen TEXT NOT NULL,
    last_changed TEXT NOT NULL,
    PRIMARY KEY (batch_id, run_setting_id)
) WITHOUT ROWID;
CREATE TABLE executions (
    run_id TEXT PRIMARY KEY,
    batch_id TEXT NOT NULL REFERENCES batches (id),
    status TEXT,
    name TEXT,
    workflow_id TEXT,
    creation_time TEXT,
    start_time TEXT,
    stop_time TEXT,
    item TEXT,
    first_seen TEXT NOT NULL,
    last_changed TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX executions_by_batch ON executions (batch_id);
CREATE INDEX runs_by_run_id ON runs (run_id);
CREATE INDEX runs_by_status ON runs (submission_status);
"""

# ListRunsInBatch's fields, and the columns that hold them.
RUN_FIELDS = (
    ("runId", "run_id"),
    ("runInternalUuid", "run_internal_uuid"),
    ("runArn", "run_arn"),
    ("submissionStatus", "submission_status"),
    ("submissionFailureReason", "submission_failure_reason"),
    ("submissionFailureMessage", "submission_failure_message"),
)


class MirrorError(OmicsBatchRunsError, ValueError):
    """The database cannot serve this sync (found before any request)."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class BatchRow:
    """What the mirror knows of a batch."""

    id: str
    status: str | None
    total_runs: int | None
    last_listed: str | None
    listed_status: str | None
    listed_total: int | None
    deleted: bool
    next_token: str | None
    last_token: str | None
    name: str | None = None
    workflow_id: str | None = None


@dataclass
class PageCounts:
    added: int = 0
    changed: int = 0


class Mirror:
    """An open mirror database, locked for one sync at a time."""

    def __init__(self, path: Path, db: sqlite3.Connection, lock_fd: int) -> None:
        self.path = path
        self._db = db
        self._lock_fd = lock_fd

    @classmethod
    def open(cls, path: str | Path, *, create: bool = True) -> Mirror:
        """Open the mirror at `path`, refusing what is not one (one line each).

        A sync (`create`) makes it if new and holds it for itself; a reader (a report) needs
        it to exist and shares it, as WAL lets readers and one writer do."""
        path = Path(path)
        text = str(path)
        if text.endswith(("/", os.sep)) or path.is_dir():
            raise MirrorError(f"--db {text} is a directory; give a file name")
        if not path.parent.is_dir():
            raise MirrorError(f"--db directory {path.parent} does not exist")
        new = not path.exists()
        if not new and not path.is_file():
            raise MirrorError(f"--db {text} is not a regular file")
        if new and not create:
            raise MirrorError(f"no mirror at --db {text}: run `omics-batch-runs sync` first")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise MirrorError(f"cannot open --db {text}: {e.strerror}") from None
        try:
            if create:
                _lock(fd, text)
            db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
            try:
                mirror = cls(path, db, fd)
                mirror._prepare(new)
            except BaseException:
                db.close()
                raise
        except BaseException:
            os.close(fd)
            if new:
                _remove(path)
            raise
        return mirror

    def _prepare(self, new: bool) -> None:
        db = self._db
        try:
            if new or not db.execute("SELECT name FROM sqlite_master").fetchall():
                db.execute("PRAGMA journal_mode = WAL")
                with self.transaction():
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(
                        "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                    )
            version = self.meta("schema_version")
        except sqlite3.DatabaseError as e:
            raise MirrorError(f"--db {self.path} is not a mirror database ({e})") from None
        if version is None:
            raise MirrorError(f"--db {self.path} is not a mirror database (no schema version)")
        if version != str(SCHEMA_VERSION):
            raise MirrorError(
                f"--db {self.path} has schema version {version}; this program knows "
                f"{SCHEMA_VERSION}"
            )
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # WAL: safe against a kill, cheap per page
        db.execute("PRAGMA foreign_keys = ON")

    def close(self) -> None:
        self._db.close()
        os.close(self._lock_fd)  # after SQLite's own descriptors: its locks stay whole

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def bind(self, key: str, value: str, what: str) -> None:
        """Record the Region (or account) of the mirror, or refuse another one."""
        known = self.meta(key)
        if known is None:
            with self.transaction() as db:
                db.execute("INSERT INTO meta VALUES (?, ?)", (key, value))
        elif known != value:
            raise MirrorError(
                f"--db {self.path} mirrors {what} {known}, not {value}; use another --db"
            )

    def batches(self, ids: Iterable[str] | None = None) -> dict[str, BatchRow]:
        columns = (
            "id, status, total_runs, last_listed, listed_status, listed_total, deleted, "
            "next_token, last_token, name, workflow_id"
        )
        rows = self._db.execute(f"SELECT {columns} FROM batches").fetchall()
        known = {
            r[0]: BatchRow(
                id=r[0],
                status=r[1],
                total_runs=r[2],
                last_listed=r[3],
                listed_status=r[4],
                listed_total=r[5],
                deleted=bool(r[6]),
                next_token=r[7],
                last_token=r[8],
                name=r[9],
                workflow_id=r[10],
            )
            for r in rows
        }
        if ids is None:
            return known
        return {i: known[i] for i in ids if i in known}

    def saw_batches(self, items: Sequence[dict[str, Any]], get_batch: bool = False) -> None:
        """Batches as ListBatch (or GetBatch) described them."""
        stamp = now_iso()
        with self.transaction() as db:
            db.executemany(
                """
                INSERT INTO batches
                    (id, name, status, total_runs, workflow_id, created_at, get_batch,
                     first_seen, last_seen)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (id) DO UPDATE SET
                    name = coalesce(excluded.name, name),
                    status = excluded.status,
                    total_runs = coalesce(excluded.total_runs, total_runs),
                    workflow_id = coalesce(excluded.workflow_id, workflow_id),
                    created_at = coalesce(excluded.created_at, created_at),
                    get_batch = coalesce(excluded.get_batch, get_batch),
                    last_seen = excluded.last_seen,
                    deleted = 0
                """,
                [
                    (
                        item["id"],
                        item.get("name"),
                        item.get("status"),
                        item.get("totalRuns"),
                        item.get("workflowId")
                        or item.get("defaultRunSetting", {}).get("workflowId"),
                        _text(item.get("createdAt") or item.get("creationTime")),
                        orjson.dumps(item, default=_text).decode() if get_batch else None,
                        stamp,
                        stamp,
                    )
                    for item in items
                ],
            )

    def mark_deleted(self, batch_id: str) -> bool:
        """The batch is gone upstream: keep it and its rows, marked. Whether it was known."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE batches SET deleted = 1, next_token = NULL WHERE id = ? AND deleted = 0",
                (batch_id,),
            )
        return cursor.rowcount > 0

    def restart(self, batch_id: str) -> None:
        """List this batch again from its first page (a token the service refused)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE batches SET next_token = NULL, last_token = NULL WHERE id = ?",
                (batch_id,),
            )

    def write_page(
        self,
        batch_id: str,
        runs: Sequence[dict[str, Any]],
        token: str | None,
        next_token: str | None,
        status: str | None,
        total: int | None,
    ) -> PageCounts:
        """One page, its batch's next token, and (on the last page) the listing's end."""
        stamp = now_iso()
        counts = PageCounts()
        with self.transaction() as db:
            keys = [r["runSettingId"] for r in runs]
            existing: dict[str, tuple[Any, ...]] = {}
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                columns = ", ".join(c for _, c in RUN_FIELDS)
                for row in db.execute(
                    f"SELECT run_setting_id, {columns} FROM runs "
                    f"WHERE batch_id = ? AND run_setting_id IN ({marks})",
                    (batch_id, *chunk),
                ):
                    existing[row[0]] = tuple(row[1:])
            inserts, updates = [], []
            for run in runs:
                values = tuple(run.get(f) for f, _ in RUN_FIELDS)
                before = existing.get(run["runSettingId"])
                if before is None:
                    inserts.append((batch_id, run["runSettingId"], *values, stamp, stamp))
                elif before != values:
                    updates.append((*values, stamp, batch_id, run["runSettingId"]))
            db.executemany(f"INSERT INTO runs VALUES ({','.join('?' * 10)})", inserts)
            sets = ", ".join(f"{c} = ?" for _, c in RUN_FIELDS)
            db.executemany(
                f"UPDATE runs SET {sets}, last_changed = ? "
                "WHERE batch_id = ? AND run_setting_id = ?",
                updates,
            )
            counts.added, counts.changed = len(inserts), len(updates)
            if next_token is None:
                db.execute(
                    """
                    UPDATE batches SET next_token = NULL, last_token = ?, last_listed = ?,
                        listed_status = ?, listed_total = ?
                    WHERE id = ?
                    """,
                    (token, stamp, status, total, batch_id),
                )
            else:
                db.execute(
                    "UPDATE batches SET next_token = ?, last_token = ? WHERE id = ?",
                    (next_token, token, batch_id),
                )
        return counts

    def write_executions(self, batch_id: str, items: Sequence[dict[str, Any]]) -> int:
        """One ListRuns page: each run's execution status, beside its submission (by runId).
        Returns how many changed. A run ListRuns no longer returns keeps what was seen."""
        stamp = now_iso()
        changed = 0
        with self.transaction() as db:
            for item in items:
                values = (
                    batch_id,
                    item.get("status"),
                    item.get("name"),
                    item.get("workflowId"),
                    _text(item.get("creationTime")),
                    _text(item.get("startTime")),
                    _text(item.get("stopTime")),
                    orjson.dumps(item, default=_text).decode(),
                )
                cursor = db.execute(
                    """
                    INSERT INTO executions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (run_id) DO UPDATE SET
                        status = excluded.status, start_time = excluded.start_time,
                        stop_time = excluded.stop_time, item = excluded.item,
                        last_changed = excluded.last_changed
                    WHERE executions.item IS NOT excluded.item
                    """,
                    (item["id"], *values, stamp, stamp),
                )
                changed += cursor.rowcount
        return changed

    def executions_final(self, batch_id: str) -> None:
        """Every run of the batch has ended: ListRuns need not be asked about it again."""
        with self.transaction() as db:
            db.execute("UPDATE batches SET executions_final = 1 WHERE id = ?", (batch_id,))

    def get_batch(self, batch_id: str) -> dict[str, Any] | None:
        """GetBatch's answer as last fetched, if ever, and whether executions are final."""
        row = self._db.execute(
            "SELECT get_batch, executions_final FROM batches WHERE id = ?", (batch_id,)
        ).fetchone()
        if row is None or row[0] is None:
            return None
        answer: dict[str, Any] = orjson.loads(row[0])
        answer["executionsFinal"] = bool(row[1])
        return answer

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self._db.execute(sql, params))

    def run_counts(self) -> dict[str, int]:
        """Rows held for each batch, in one query."""
        query = "SELECT batch_id, count(*) FROM runs GROUP BY batch_id"
        return {batch_id: int(n) for batch_id, n in self._db.execute(query)}


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    return str(value)


def _lock(fd: int, name: str) -> None:
    """One sync at a time: the second waits briefly, then gives up with one line.

    flock, not SQLite's own locks: those last a transaction, a sync lasts minutes. On Linux
    flock and SQLite's POSIX locks do not meet, and this descriptor is closed last."""
    deadline = time.monotonic() + _LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise MirrorError(f"--db {name} is in use by another sync") from None
            time.sleep(0.1)


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
