"""Counters a caller can read while a fetch runs: what was asked, what was retried."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FetchStats:
    """Live counts for one fetch (or several, if shared). Every retry is counted once."""

    requests: int = 0
    pages: int = 0
    runs: int = 0
    retries: int = 0
    throttles: int = 0
    timeouts: int = 0
    server_errors: int = 0
    connection_errors: int = 0
    batches_started: int = 0
    batches_done: int = 0
    batches_failed: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    retries_by_error: dict[str, int] = field(default_factory=dict)
