"""Which runs did not make it, from the mirror: failed submissions, and (where `sync
--run-status` has seen them) runs that were submitted but then failed or were cancelled."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import InvalidInput
from .mirror import Mirror

RUN_FAILURES = ("FAILED", "CANCELLED")  # execution statuses that mean the run did not make it


@dataclass(frozen=True)
class Failure:
    """One run that did not make it, and why."""

    batch_id: str
    run_setting_id: str
    run_id: str | None
    stage: str  # "submission" or "run"
    reason: str  # submissionFailureReason, or the execution status
    message: str | None  # submissionFailureMessage

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


def failures(db: str | Path, batch_ids: Sequence[str] = (), *, runs: bool = True) -> list[Failure]:
    """Every run of these batches (all, if none given) that did not make it, in batch and
    runSettingId order. `runs=False` leaves out runs that failed after being submitted."""
    mirror = Mirror.open(db, create=False)
    try:
        where = ""
        params: tuple[str, ...] = ()
        if batch_ids:
            where = f"AND r.batch_id IN ({','.join('?' * len(batch_ids))})"
            params = tuple(batch_ids)
            known = set(mirror.batches(batch_ids))
            missing = [b for b in batch_ids if b not in known]
            if missing:
                raise InvalidInput(f"batch {', '.join(missing)} is not in the mirror: sync it")
        rows = mirror.query(
            f"""
            SELECT r.batch_id, r.run_setting_id, r.run_id, r.submission_status,
                   r.submission_failure_reason, r.submission_failure_message, e.status
            FROM runs r LEFT JOIN executions e ON e.run_id = r.run_id
            WHERE (r.submission_status = 'FAILED'
                   OR e.status IN ({",".join("?" * len(RUN_FAILURES))})) {where}
            ORDER BY r.batch_id, r.run_setting_id
            """,
            (*RUN_FAILURES, *params),
        )
    finally:
        mirror.close()
    found = []
    for batch_id, setting, run_id, submission, reason, message, execution in rows:
        if submission == "FAILED":
            found.append(
                Failure(batch_id, setting, run_id, "submission", reason or "Unknown", message)
            )
        elif runs:
            found.append(Failure(batch_id, setting, run_id, "run", execution, None))
    return found


def as_csv(found: Sequence[Failure]) -> str:
    """A header, then a row a run; messages with commas, quotes and newlines quoted, as
    spreadsheets read them (RFC 4180)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["batch_id", "run_setting_id", "run_id", "stage", "reason", "message"])
    for f in found:
        writer.writerow([f.batch_id, f.run_setting_id, f.run_id, f.stage, f.reason, f.message])
    return out.getvalue()
