"""The emulator's data: batches and runs computed from a seed, never stored.

Every run is a pure function of (seed, batch, index), so a batch of 100,000 runs costs
nothing until a page of it is asked for, and two emulators with one seed agree exactly.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
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
    """One run batch. Runs appear at `submit_rate` runs/s while SUBMITTING."""

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

    def visible_runs(self, now: float) -> int:
        if self.submit_rate is None:
            return self.total_runs
        return min(self.total_runs, int((now - self.created_at) * self.submit_rate))

    def status(self, now: float) -> str:
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
        if any(not 0 <= s <= MAX_RUNS_PER_BATCH for s in sizes):
            raise ValueError(f"a batch holds 0 to {MAX_RUNS_PER_BATCH:,} runs")
        self.seed = seed
        self.account = account
        self.region = region
        self.created = time.time()
        self._batches: list[Batch] = []
        for k, size in enumerate(sizes):
            key = _mix(seed * 1_000_003 + k)
            growing = k < submitting
            self._batches.append(
                Batch(
                    ordinal=k,
                    # 104729 is prime, so ids stay distinct for millions of batches.
                    id=str(1_000_000 + (_mix(seed) % 1_000_000 + k * 104_729) % 9_000_000),
                    name=f"cohort-{k % 7}-{k:05d}",
                    total_runs=size,
                    final_status=_batch_status(key, size),
                    run_group_id=str(2_000_000 + k % 5),
                    workflow_id=str(3_000_000 + k % 3),
                    created_at=self.created - 86_400 + k * 60 if not growing else self.created,
                    submit_rate=submit_rate if growing else None,
                    key=key,
                )
            )
        self._by_id = {b.id: b for b in self._batches}

    @property
    def batches(self) -> Sequence[Batch]:
        return self._batches

    def batch(self, batch_id: str) -> Batch | None:
        return self._by_id.get(batch_id)

    def run(self, batch: Batch, index: int) -> dict[str, Any]:
        """Run `index` of `batch` as ListRunsInBatch returns it."""
        return _run(batch.key, batch.ordinal, index, self.account, self.region)

    def runs(
        self, batch: Batch, start: int = 0, stop: int | None = None
    ) -> Iterator[dict[str, Any]]:
        end = batch.total_runs if stop is None else min(stop, batch.total_runs)
        for i in range(start, end):
            yield self.run(batch, i)

    def index_of_run_setting_id(self, batch: Batch, run_setting_id: str) -> int | None:
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


@lru_cache(maxsize=4096)
def _counts(dataset: Dataset, batch: Batch, visible: int) -> Counter[str]:
    return Counter(r["submissionStatus"] for r in dataset.runs(batch, 0, visible))


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
