"""What a fetch is asked to do, checked once, before any request is sent."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from .errors import InvalidInput
from .service import MAX_PAGE_SIZE, SUBMISSION_STATUSES


def check_batch_id(value: object) -> str:
    """Batch ids are 1 to 18 ASCII digits; ints are accepted and turned into strings."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(text, str)
        or not 1 <= len(text) <= 18
        or not (text.isascii() and text.isdigit())
    ):
        raise InvalidInput(f"invalid batch id {value!r}: expected 1 to 18 digits")
    return text


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# A cap on requests/s: below one request in about 17 minutes an export never ends; above
# any quota is no cap at all.
MIN_MAX_RPS, MAX_MAX_RPS = 0.001, 100_000.0


def check_max_rps(value: object) -> None:
    """A cap on requests/s: None (no cap) or a number in the range above."""
    if value is not None and (not _number(value) or not MIN_MAX_RPS <= value <= MAX_MAX_RPS):
        raise InvalidInput(
            f"max rps must be a number from {MIN_MAX_RPS} to {MAX_MAX_RPS:.0f}, not {value!r}"
        )


@dataclass(frozen=True)
class FetchOptions:
    """Options of one fetch. Invalid combinations raise InvalidInput on construction."""

    concurrency: int = 16
    page_size: int = MAX_PAGE_SIZE
    submission_status: str | None = None
    run_setting_id: str | None = None
    run_id: str | None = None
    max_rps: float | None = None
    max_attempts: int = 10
    backoff: float = 0.1
    fail_fast: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int):
            raise InvalidInput(f"concurrency must be an integer, not {self.concurrency!r}")
        if self.concurrency < 1:
            raise InvalidInput(f"concurrency must be at least 1, not {self.concurrency}")
        if isinstance(self.page_size, bool) or not isinstance(self.page_size, int):
            raise InvalidInput(f"page size must be an integer, not {self.page_size!r}")
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise InvalidInput(f"page size must be 1 to {MAX_PAGE_SIZE}, not {self.page_size}")
        given = [n for n, v in self.filters().items() if v is not None]
        if len(given) > 1:
            raise InvalidInput(f"at most one filter is allowed, got {' and '.join(given)}")
        if self.submission_status is not None and self.submission_status not in SUBMISSION_STATUSES:
            raise InvalidInput(
                f"unknown submission status {self.submission_status!r}: "
                f"expected one of {', '.join(SUBMISSION_STATUSES)}"
            )
        for name in ("run_setting_id", "run_id"):
            value = getattr(self, name)
            if value is not None and not value:
                raise InvalidInput(f"{name.replace('_', ' ')} must not be empty")
        check_max_rps(self.max_rps)
        if not _number(self.backoff) or not 0 <= self.backoff < math.inf:
            raise InvalidInput(f"backoff must be a number of seconds, not {self.backoff!r}")
        if not isinstance(self.fail_fast, bool):
            raise InvalidInput(f"fail fast must be True or False, not {self.fail_fast!r}")
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise InvalidInput(f"max attempts must be an integer, not {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise InvalidInput(f"max attempts must be at least 1, not {self.max_attempts}")

    def filters(self) -> dict[str, str | None]:
        return {
            "submissionStatus": self.submission_status,
            "runSettingId": self.run_setting_id,
            "runId": self.run_id,
        }

    def request(self, batch_id: str, token: str | None) -> dict[str, Any]:
        """ListRunsInBatch's parameters for one page."""
        params: dict[str, Any] = {"batchId": batch_id, "maxItems": self.page_size}
        params.update((k, v) for k, v in self.filters().items() if v is not None)
        if token:
            params["startingToken"] = token
        return params


@dataclass(frozen=True)
class Selection:
    """Which batches: these ids, or (`discover` set) every batch ListBatch lists, with
    ListBatch's filter (`{}`: none)."""

    batch_ids: Sequence[str] = ()
    discover: dict[str, str] | None = None
