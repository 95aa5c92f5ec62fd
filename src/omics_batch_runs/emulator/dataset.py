"""The emulator's data: batches and runs computed from a seed, never stored.

Every run is a pure function of (seed, batch, index), so a batch of 100,000 runs costs
nothing until a page of it is asked for, and two emulators with one seed agree exactly.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from ..service import FAILURE_REASONS, MAX_RUNS_PER_BATCH

# Messages as a service writes them: quotes, non-ASCII text and line breaks included,
# so that every client on the path has to escape them properly.
_FAILURE_MESSAGES = (
    'Parameter "input_bam" must be an S3 URI; got "s3:/bucket/sample.bam"',
    "Role arn:aws:iam::{account}:role/OmicsRun is not authorized to read s3://lab-données/ref",
    "Workflow 'wf-{n}' not found\nCheck the workflowId in runSettings[{n}]",
    "Quota exceeded: 🧬 concurrent runs ≥ limit (see “Service Quotas”)",
    "Run group is being updated; retry later\t(conflict)",
    "Rate exceeded\r\nback-off and retry",
    'Request timed out after 30s: {{"stage": "start"}}',
    "Internal error — ошибка сервера, request id {n}",
)

_MASK = (1 << 64) - 1
_RUN_FINAL = ("COMPLETED", "FAILED", "CANCELLED", "DELETED")
_STATUSES_SETTLED = ("INPROGRESS", "PROCESSED", "CANCELLED", "FAILED", "RUNS_DELETED")


def _mix(x: int) -> int:
    """splitmix64's finaliser: cheap, well spread, deterministic across processes."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


# runId is an affine permutation of the run's global index, so that filtering by runId
# finds the run directly instead of scanning a batch of 100,000.
_RUN_ID_MOD = 9 * 10**9
_RUN_ID_MUL = 7_919_113
_RUN_ID_ADD = 123_456_789
_RUN_ID_INV = pow(_RUN_ID_MUL, -1, _RUN_ID_MOD)


@dataclass(frozen=True)
class Batch:
    """One run batch. A growing one is PENDING for `pending_for` seconds, then SUBMITTING
    while its runs appear at `submit_rate` runs/s, then `final_status`. Cancelling stops the
    submission and turns submitted runs into cancellations; deleting the runs turns them
    into deletions, as the service's CancelRunBatch and DeleteRunBatch do."""

    ordinal: int
    id: str
    name: str
    total_runs: int
    final_status: str
    run_group_id: str
    workflow_id: str
    created_at: float
    submit_rate: float | None = None
    key: int = field(default=0, repr=False)
    pending_for: float = 0.0
    fate: str | None = None  # None, "cancelled" or "runs_deleted"
    stopped_at: int | None = None  # runs submitted when it was cancelled
    deleted: bool = False  # DeleteBatch: gone from every API
    forgotten: bool = False  # its runs no longer answered by ListRuns (the service keeps few)
    run_setting_ids: tuple[str, ...] | None = None  # a started batch's own, else sample-N
    default_run_setting: dict[str, Any] | None = field(default=None, compare=False)
    request_id: str | None = None

    def visible_runs(self, now: float) -> int:
        if self.stopped_at is not None:
            return self.stopped_at
        if self.submit_rate is None:
            return self.total_runs
        elapsed = max(0.0, now - self.created_at - self.pending_for)
        return min(self.total_runs, int(elapsed * self.submit_rate))

    def status(self, now: float) -> str:
        if self.fate == "runs_deleted":
            return "RUNS_DELETED"
        if self.fate == "cancelled":
            return "CANCELLED"
        if self.submit_rate is not None and now < self.created_at + self.pending_for:
            return "PENDING"
        if self.visible_runs(now) < self.total_runs:
            return "SUBMITTING"
        return self.final_status


class Dataset:
    """A deterministic set of batches and their runs."""

    def __init__(
        self,
        *,
        seed: int = 0,
        batches: int = 20,
        runs_per_batch: int | None = None,
        sizes: Sequence[int] | None = None,
        submitting: int = 0,
        submit_rate: float = 50.0,
        account: str = "123456789012",
        region: str = "us-east-1",
    ) -> None:
        if sizes is None:
            sizes = [
                runs_per_batch if runs_per_batch is not None else _varied_size(seed, k)
                for k in range(batches)
            ]
        self.seed = seed
        self.account = account
        self.region = region
        self.created = time.time()
        self.submit_rate = submit_rate
        self._all: list[Batch] = []  # deleted ones too: ListBatch positions stay put
        self._by_id: dict[str, Batch] = {}
        self.add(sizes[:submitting], submitting=True, now=self.created)
        self.add(sizes[submitting:], now=self.created)

    def start(
        self,
        run_setting_ids: Sequence[str],
        default_run_setting: dict[str, Any],
        request_id: str,
        name: str | None = None,
    ) -> Batch:
        """StartRunBatch: a batch of these runs, PENDING a moment, then submitting them."""
        for batch in self._all:
            if batch.request_id == request_id:
                return batch  # the same request again: the same batch
        (batch,) = self.add([len(run_setting_ids)], submitting=True, pending_for=0.5)
        started = replace(
            batch,
            run_setting_ids=tuple(run_setting_ids),
            default_run_setting=dict(default_run_setting),
            request_id=request_id,
            name=name or batch.name,
            workflow_id=str(default_run_setting["workflowId"]),
        )
        self._all[batch.ordinal] = self._by_id[batch.id] = started
        return started

    def add(
        self,
        sizes: Sequence[int],
        *,
        submitting: bool = False,
        pending_for: float = 0.0,
        now: float | None = None,
    ) -> list[Batch]:
        """New batches: settled, or still submitting their runs."""
        if any(not 0 <= s <= MAX_RUNS_PER_BATCH for s in sizes):
            raise ValueError(f"a batch holds 0 to {MAX_RUNS_PER_BATCH:,} runs")
        now = time.time() if now is None else now
        added = []
        for size in sizes:
            k = len(self._all)
            key = _mix(self.seed * 1_000_003 + k)
            batch = Batch(
                ordinal=k,
                # 104729 is prime, so ids stay distinct for millions of batches.
                id=str(1_000_000 + (_mix(self.seed) % 1_000_000 + k * 104_729) % 9_000_000),
                name=f"cohort-{k % 7}-{k:05d}",
                total_runs=size,
                final_status="INPROGRESS" if submitting and size else _batch_status(key, size),
                run_group_id=str(2_000_000 + k % 5),
                workflow_id=str(3_000_000 + k % 3),
                created_at=now if submitting else self.created - 86_400 + k * 60,
                submit_rate=self.submit_rate if submitting else None,
                key=key,
                pending_for=pending_for,
            )
            self._all.append(batch)
            self._by_id[batch.id] = batch
            added.append(batch)
        return added

    def _change(self, batch_id: str, allowed: Sequence[str], **changes: Any) -> Batch:
        batch = self.batch(batch_id)
        if batch is None:
            raise KeyError(batch_id)
        status = batch.status(time.time())
        if status not in allowed:
            raise ValueError(f"batch {batch_id} is {status}: allowed in {', '.join(allowed)}")
        changed = replace(batch, **changes)
        self._all[batch.ordinal] = self._by_id[batch_id] = changed
        return changed

    def cancel(self, batch_id: str) -> Batch:
        """CancelRunBatch: submission stops; submitted runs become cancellations."""
        batch = self.batch(batch_id)
        visible = batch.visible_runs(time.time()) if batch is not None else 0
        allowed = ("PENDING", "SUBMITTING", "INPROGRESS")
        return self._change(batch_id, allowed, fate="cancelled", stopped_at=visible)

    def delete_runs(self, batch_id: str) -> Batch:
        """DeleteRunBatch: the batch's runs become deletions."""
        return self._change(batch_id, ("PROCESSED", "CANCELLED"), fate="runs_deleted")

    def forget(self, batch_id: str) -> Batch:
        """The service keeps a limited number of runs for ListRuns: these it no longer has."""
        everything = ("PENDING", "SUBMITTING", *(s for s in _STATUSES_SETTLED))
        return self._change(batch_id, everything, forgotten=True)

    def delete(self, batch_id: str) -> Batch:
        """DeleteBatch: gone from GetBatch, ListBatch and ListRunsInBatch."""
        terminal = ("PROCESSED", "CANCELLED", "FAILED", "RUNS_DELETED")
        return self._change(batch_id, terminal, deleted=True)

    @property
    def batches(self) -> Sequence[Batch]:
        """Every batch the service still knows, in the order ListBatch lists them."""
        return [b for b in self._all if not b.deleted]

    @property
    def positions(self) -> Sequence[Batch]:
        """Every batch ever made, deleted ones included: what ListBatch tokens count."""
        return self._all

    def batch(self, batch_id: str) -> Batch | None:
        batch = self._by_id.get(batch_id)
        return None if batch is None or batch.deleted else batch

    def run(self, batch: Batch, index: int) -> dict[str, Any]:
        """Run `index` of `batch` as ListRunsInBatch returns it."""
        run = _run(batch.key, batch.ordinal, index, self.account, self.region)
        if batch.run_setting_ids is not None:
            run["runSettingId"] = batch.run_setting_ids[index]
        if batch.fate is not None:
            _meet_fate(run, batch.fate, _mix(batch.key + index))
        return run

    def execution(self, batch: Batch, index: int, now: float) -> dict[str, Any] | None:
        """Run `index` as ListRuns lists it at `now`, or None if its submission failed.

        Submitted when its turn came, it waits, starts, runs, and ends COMPLETED (or, one
        in fourteen, FAILED); a cancelled submission ends CANCELLED, a deleted one DELETED.
        """
        run = self.run(batch, index)
        if "runId" not in run:
            return None
        rate = batch.submit_rate
        submitted = batch.created_at + batch.pending_for + (index / rate if rate else 0.0)
        h = _mix(batch.key * 31 + index)
        started = submitted + 2 + h % 10
        ends = started + 10 + (h >> 8) % 50
        final = "FAILED" if (h >> 16) % 14 == 0 else "COMPLETED"
        if run["submissionStatus"] == "CANCEL_SUCCESS":
            final, ends = "CANCELLED", min(ends, max(now, submitted))
        elif run["submissionStatus"] == "DELETE_SUCCESS":
            final = "DELETED"
        if now < started:
            status = "PENDING" if now < started - 1 else "STARTING"
        else:
            status = "RUNNING" if now < ends else final
        item: dict[str, Any] = {
            "arn": run["runArn"],
            "id": run["runId"],
            "status": status,
            "workflowId": batch.workflow_id,
            "batchId": batch.id,
            "name": run["runSettingId"],
            "priority": 1,
            "storageType": "DYNAMIC",
            "creationTime": submitted,
        }
        if now >= started:
            item["startTime"] = started
        if status in _RUN_FINAL:
            item["stopTime"] = ends
        return item

    def runs(
        self, batch: Batch, start: int = 0, stop: int | None = None
    ) -> Iterator[dict[str, Any]]:
        end = batch.total_runs if stop is None else min(stop, batch.total_runs)
        for i in range(start, end):
            yield self.run(batch, i)

    def index_of_run_setting_id(self, batch: Batch, run_setting_id: str) -> int | None:
        if batch.run_setting_ids is not None:
            ids = batch.run_setting_ids
            return ids.index(run_setting_id) if run_setting_id in ids else None
        prefix, _, digits = run_setting_id.rpartition("-")
        if prefix != "sample" or not digits.isdigit() or len(digits) != 6:
            return None
        index = int(digits) - 1
        return index if 0 <= index < batch.total_runs else None

    def index_of_run_id(self, batch: Batch, run_id: str) -> int | None:
        if not run_id.isdigit() or len(run_id) != 10:
            return None
        g = ((int(run_id) - 1_000_000_000 - _RUN_ID_ADD) * _RUN_ID_INV) % _RUN_ID_MOD
        ordinal, index = divmod(g, MAX_RUNS_PER_BATCH)
        if ordinal != batch.ordinal or index >= batch.total_runs:
            return None
        return index if "runId" in self.run(batch, index) else None

    def submission_counts(self, batch: Batch, visible: int) -> Counter[str]:
        return _counts(self, batch, visible)

    def execution_counts(self, batch: Batch, now: float) -> Counter[str]:
        """ListRuns statuses of the batch's submitted runs at `now` (per second; once
        every run has ended, for good)."""
        rate = batch.submit_rate
        last = batch.created_at + batch.pending_for + (batch.total_runs / rate if rate else 0)
        moment = -1 if now > last + 75 else int(now)  # every run ends within 72 s
        return _execution_counts(self, batch, batch.visible_runs(now), moment)


@lru_cache(maxsize=4096)
def _counts(dataset: Dataset, batch: Batch, visible: int) -> Counter[str]:
    return Counter(r["submissionStatus"] for r in dataset.runs(batch, 0, visible))


@lru_cache(maxsize=4096)
def _execution_counts(dataset: Dataset, batch: Batch, visible: int, moment: int) -> Counter[str]:
    now = time.time() if moment < 0 else float(moment)
    counts: Counter[str] = Counter()
    for i in range(visible):
        item = dataset.execution(batch, i, now)
        if item is not None:
            counts[item["status"]] += 1
    return counts


def _varied_size(seed: int, k: int) -> int:
    """Mostly small batches, some empty, a few with thousands of runs."""
    h = _mix(seed * 7_777_777 + k + 1)
    bucket = h % 100
    if bucket < 8:
        return 0
    if bucket < 65:
        return 1 + h % 250
    if bucket < 93:
        return 250 + h % 2_250
    return 2_500 + h % 6_000


def _batch_status(key: int, size: int) -> str:
    if size == 0:
        return "FAILED"
    return ("PROCESSED", "PROCESSED", "PROCESSED", "INPROGRESS", "CANCELLED")[key % 5]


def _status(h: int) -> str:
    p = h % 1000
    if p < 860:
        return "SUCCESS"
    if p < 960:
        return "FAILED"
    if p < 975:
        return "CANCEL_SUCCESS"
    if p < 980:
        return "CANCEL_FAILED"
    if p < 995:
        return "DELETE_SUCCESS"
    return "DELETE_FAILED"


def _meet_fate(run: dict[str, Any], fate: str, h: int) -> None:
    """What a cancel or a delete of the batch does to a submitted run."""
    status = run["submissionStatus"]
    if fate == "cancelled" and status == "SUCCESS":
        run["submissionStatus"] = "CANCEL_SUCCESS" if h % 20 else "CANCEL_FAILED"
    elif fate == "runs_deleted" and status in ("SUCCESS", "CANCEL_SUCCESS"):
        run["submissionStatus"] = "DELETE_SUCCESS" if h % 30 else "DELETE_FAILED"
    else:
        return
    if run["submissionStatus"].endswith("FAILED"):
        run["submissionFailureReason"] = "ConflictException"
        run["submissionFailureMessage"] = "The run was already in a terminal state"


def _run(key: int, ordinal: int, index: int, account: str, region: str) -> dict[str, Any]:
    h = _mix(key ^ (index * 0x9E3779B97F4A7C15 & _MASK))
    status = _status(h)
    u = f"{h:016x}{(h * 0x2545F4914F6CDD1D) & _MASK:016x}"
    run: dict[str, Any] = {"runSettingId": f"sample-{index + 1:06d}"}
    if status != "FAILED":
        g = ordinal * MAX_RUNS_PER_BATCH + index
        run_id = str(1_000_000_000 + (g * _RUN_ID_MUL + _RUN_ID_ADD) % _RUN_ID_MOD)
        run["runId"] = run_id
        run["runArn"] = f"arn:aws:omics:{region}:{account}:run/{run_id}"
    run["runInternalUuid"] = f"{u[:8]}-{u[8:12]}-4{u[13:16]}-a{u[17:20]}-{u[20:32]}"
    run["submissionStatus"] = status
    if status.endswith("FAILED"):
        n = (h >> 20) % len(FAILURE_REASONS)
        run["submissionFailureReason"] = FAILURE_REASONS[n]
        run["submissionFailureMessage"] = _FAILURE_MESSAGES[n].format(account=account, n=index)
    return run
