"""A token-bucket service and its clients on a virtual clock, for the rate controller's tests.

Deterministic: no wall time is read, so what these measure holds on a loaded machine too.
Each client is a set of workers sending through its own AdaptiveRate, as one export does; a
neighbour sends at a steady rate through the same bucket and does not retry.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from dataclasses import dataclass, field

from omics_batch_runs import AdaptiveRate


class Clock:
    """A virtual clock: what the controller reads is what the simulation sets."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Client:
    """One export: `concurrency` workers, `pages` to fetch, one controller."""

    pages: int
    concurrency: int = 16
    max_rps: float | None = None
    delay: float = 0.0  # seconds after the others it starts
    rate: AdaptiveRate | None = None
    # What happened, filled in by `run`:
    done: int = 0
    sent: int = 0
    throttled: int = 0
    finished: float | None = None
    throttled_at: list[float] = field(default_factory=list)
    per_second: Counter[int] = field(default_factory=Counter)

    def share(self, start: float, end: float) -> float:
        """Pages per second it got over [start, end)."""
        return sum(n for s, n in self.per_second.items() if start <= s < end) / (end - start)


@dataclass
class Neighbour:
    """Another tool on the account: a steady `rps`, throttles not retried."""

    rps: float
    delay: float = 0.0  # seconds after the clients it starts
    sent: int = 0
    throttled: int = 0


@dataclass
class Service:
    """The account's quota: `schedule` is [(from time, rate, burst)], the first from 0."""

    schedule: list[tuple[float, float, float]]
    latency: float = 0.03  # seconds the service takes to answer
    jitter: float = 0.2
    network: float = 0.002  # seconds each way, give or take half
    instant_throttles: bool = False  # some services answer a throttle before doing any work
    seed: int = 1

    def quota(self, now: float) -> tuple[float, float]:
        rate, burst = self.schedule[0][1:]
        for start, r, b in self.schedule:
            if now >= start:
                rate, burst = r, b
        return rate, burst


def run(
    service: Service,
    clients: list[Client],
    neighbour: Neighbour | None = None,
    *,
    clock: Clock | None = None,
) -> float:
    """Run until every client has its pages; returns the virtual time taken."""
    clock = clock if clock is not None else Clock()
    start = clock.now
    rng = random.Random(service.seed)
    rate_now, burst = service.quota(0.0)
    tokens, stamp = burst, start
    seq = itertools.count()
    events: list[tuple[float, int, str, int, float]] = []
    for i, c in enumerate(clients):
        if c.rate is None:
            pacing = random.Random(f"{service.seed} {i}")
            c.rate = AdaptiveRate(c.max_rps, clock=clock, rng=pacing)
        heapq.heappush(events, (start + c.delay, next(seq), "tick", i, 0.0))
    idle = [c.concurrency for c in clients]
    ticking = [True] * len(clients)
    if neighbour is not None:
        first = start + neighbour.delay + rng.uniform(0, 1 / neighbour.rps)
        heapq.heappush(events, (first, next(seq), "nb", -1, 0))

    def take(now: float) -> bool:
        nonlocal tokens, stamp, rate_now, burst
        rate_now, burst = service.quota(now - start)
        tokens = min(burst, tokens + (now - stamp) * rate_now)
        stamp = now
        if tokens >= 1.0:
            tokens -= 1.0
            return True
        return False

    while events:
        now, _, kind, i, sent_at = heapq.heappop(events)
        if clients and all(c.finished is not None for c in clients):
            break
        clock.now = now
        if kind == "nb":
            assert neighbour is not None
            neighbour.sent += 1
            arrival = now + service.network * rng.uniform(0.5, 1.5)
            heapq.heappush(events, (arrival, next(seq), "nb arrives", -1, 0))
            heapq.heappush(events, (now + 1 / neighbour.rps, next(seq), "nb", -1, 0))
            continue
        if kind == "nb arrives":
            assert neighbour is not None
            neighbour.throttled += not take(now)
            continue
        c = clients[i]
        assert c.rate is not None
        if kind == "tick":
            ticking[i] = False
            while idle[i] and c.done + c.concurrency - idle[i] < c.pages:
                wait = c.rate.take()
                if wait > 0:
                    heapq.heappush(events, (now + min(wait, 0.05), next(seq), "tick", i, 0.0))
                    ticking[i] = True
                    break
                idle[i] -= 1
                c.sent += 1
                arrival = now + service.network * rng.uniform(0.5, 1.5)
                heapq.heappush(events, (arrival, next(seq), "arrive", i, now))
            continue
        if kind == "arrive":
            ok = take(now)
            work = service.latency * rng.uniform(1 - service.jitter, 1 + service.jitter)
            if not ok and service.instant_throttles:
                work = 0.0
            back = now + work + service.network * rng.uniform(0.5, 1.5)
            heapq.heappush(events, (back, next(seq), "ok" if ok else "429", i, sent_at))
            continue
        idle[i] += 1
        if kind == "ok":
            c.rate.on_success(sent_at)
            c.done += 1
            c.per_second[int(now - start)] += 1
            if c.done == c.pages:
                c.finished = now - start - c.delay
        else:
            c.throttled += 1
            c.throttled_at.append(round(now - start, 2))
            c.rate.on_throttle(sent_at)
        if c.finished is None and not ticking[i]:
            heapq.heappush(events, (now, next(seq), "tick", i, 0.0))
            ticking[i] = True
    return clock.now - start
