"""Every request goes through here: the semaphore, the shared rate, retries and counters.

botocore's own retries are off (see `client`), so each retry happens here, once, and is
counted and logged. Retried: throttling, request timeouts, 5xx and dropped connections.
Not retried: validation, access and not-found errors, which no retry can fix.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import anyio
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from .rate import AdaptiveRate
from .stats import FetchStats

logger = logging.getLogger("omics_batch_runs")

_KINDS = {
    "ThrottlingException": "throttle",
    "RequestTimeoutException": "timeout",
    "InternalServerException": "server_error",
    "ServiceUnavailableException": "server_error",
}


def error_code(exc: BaseException) -> str:
    """The service's error code, or the exception's class name for transport errors."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


def transient_kind(exc: BaseException) -> str | None:
    """What kind of transient failure this is, or None if retrying cannot help."""
    if isinstance(exc, ClientError):
        kind = _KINDS.get(error_code(exc))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return kind or ("server_error" if status >= 500 else None)
    if isinstance(exc, (HTTPClientError, BotocoreConnectionError)):
        return "connection"
    return None


class _Slot:
    """One request's hold on the concurrency semaphore."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self.held = False

    async def take(self) -> None:
        if self.held:
            return
        await self._dispatcher._semaphore.acquire()
        self.held = True
        s = self._dispatcher.stats
        s.in_flight += 1
        s.max_in_flight = max(s.max_in_flight, s.in_flight)

    def give_back(self) -> None:
        if self.held:
            self.held = False
            self._dispatcher._semaphore.release()
            self._dispatcher.stats.in_flight -= 1


_SLOT: ContextVar[_Slot | None] = ContextVar("omics_batch_runs_slot", default=None)


async def _before_send(**_: Any) -> None:
    slot = _SLOT.get()
    if slot is not None:
        await slot.take()


def _before_parse(**_: Any) -> None:
    slot = _SLOT.get()
    if slot is not None:
        slot.give_back()


def _hook(client: Any) -> bool:
    """Hold a slot only while a request is on the wire: from botocore's before-send event
    to its before-parse event. Signing and parsing (about 2.5 ms of CPU for a 100-run
    page) then keep no slot idle. Returns False for a client without botocore's events."""
    events = getattr(getattr(client, "meta", None), "events", None)
    if events is None:
        return False
    events.register("before-send.omics", _before_send, unique_id="omics-batch-runs-send")
    events.register("before-parse.omics", _before_parse, unique_id="omics-batch-runs-parse")
    return True


class Dispatcher:
    """Sends one client's requests for many concurrent paginations (one account and Region)."""

    def __init__(
        self,
        client: Any,
        *,
        concurrency: int,
        rate: AdaptiveRate,
        stats: FetchStats,
        max_attempts: int,
        backoff: float = 0.1,
        max_backoff: float = 20.0,
    ) -> None:
        self.client = client
        self.rate = rate
        self.stats = stats
        self._semaphore = anyio.Semaphore(concurrency)
        self._hooked = _hook(client)
        self._max_attempts = max_attempts
        self._wait = wait_random_exponential(multiplier=backoff, max=max_backoff)

    async def call(self, operation: str, params: dict[str, Any], what: str) -> dict[str, Any]:
        """One API call with retries; raises the last error when retrying cannot help."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            code = error_code(exc) if exc else "?"
            self.stats.retries += 1
            self.stats.retries_by_error[code] = self.stats.retries_by_error.get(code, 0) + 1
            wait = state.next_action.sleep if state.next_action else 0.0
            logger.info(
                "retrying %s after %s (attempt %d, in %.2fs)",
                what,
                code,
                state.attempt_number,
                wait,
            )

        # A fresh AsyncRetrying per call: its state is not safe to share between tasks.
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda e: transient_kind(e) is not None),
            sleep=anyio.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._send(getattr(self.client, operation), params)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _send(
        self, method: Callable[..., Awaitable[dict[str, Any]]], params: dict[str, Any]
    ) -> dict[str, Any]:
        s = self.stats
        sent_at = await self.rate.acquire()
        s.requests += 1
        slot = _Slot(self)
        token = _SLOT.set(slot)
        try:
            if not self._hooked:
                await slot.take()  # no events to hook: hold the slot for the whole call
            response = await method(**params)
        except Exception as exc:
            kind = transient_kind(exc)
            if kind == "throttle":
                s.throttles += 1
                self.rate.on_throttle(sent_at)
            elif kind == "timeout":
                s.timeouts += 1
            elif kind == "server_error":
                s.server_errors += 1
            elif kind == "connection":
                s.connection_errors += 1
            raise
        finally:
            slot.give_back()
            _SLOT.reset(token)
        self.rate.on_success(sent_at)
        return response
