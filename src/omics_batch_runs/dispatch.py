"""Every request goes through here: the semaphore, the shared rate, retries and counters.

botocore's own retries are off (see `client`), so each retry happens here, once, and is
counted and logged. Retried: throttling, request timeouts, 5xx and dropped connections.
Not retried: validation, access and not-found errors, which no retry can fix.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from types import TracebackType
from typing import Any

import anyio
import anyio.lowlevel
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from .errors import InvalidInput, error_code
from .rate import AdaptiveRate
from .stats import FetchStats

logger = logging.getLogger("omics_batch_runs")

_WARN_EVERY = 10.0  # seconds between warnings that the service cannot be reached
_KINDS = {
    "ThrottlingException": "throttle",
    "RequestTimeoutException": "timeout",
    "InternalServerException": "server_error",
    "ServiceUnavailableException": "server_error",
}


def transient_kind(exc: BaseException) -> str | None:
    """What kind of transient failure this is, or None if retrying cannot help."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if status == 429:  # whatever the code says: a proxy or gateway may use its own
            return "throttle"
        kind = _KINDS.get(error_code(exc))
        return kind or ("server_error" if status >= 500 else None)
    if isinstance(exc, (HTTPClientError, BotocoreConnectionError)):
        return "connection"
    return None


class _Call:
    """One API call's place on the wire: its concurrency slot and when it was last sent."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self.held = False
        self.sent_at: float | None = None

    async def send(self) -> None:
        """Before each send: a slot (kept across botocore's own retries), then the rate."""
        d = self._dispatcher
        if not self.held:
            await d._semaphore.acquire()
            self.held = True
            d.stats.in_flight += 1
            d.stats.max_in_flight = max(d.stats.max_in_flight, d.stats.in_flight)
        self.sent_at = await d.rate.acquire()
        # A fetch stopped while this waited sends nothing more, even if it woke already.
        await anyio.lowlevel.checkpoint_if_cancelled()
        d.stats.requests += 1

    def release(self) -> None:
        if self.held:
            self.held = False
            self._dispatcher._semaphore.release()
            self._dispatcher.stats.in_flight -= 1


_CALL: ContextVar[_Call | None] = ContextVar("omics_batch_runs_call", default=None)


async def _before_send(**_: Any) -> None:
    call = _CALL.get()
    if call is not None:
        await call.send()


def _before_parse(**_: Any) -> None:
    call = _CALL.get()
    if call is not None:
        call.release()


# Dispatchers using each client's event emitter: the handlers stay registered while any
# does, and are removed after the last, so that a borrowed client is left as it came.
_users: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_HANDLERS = (
    ("before-send.omics", _before_send, "omics-batch-runs-send"),
    ("before-parse.omics", _before_parse, "omics-batch-runs-parse"),
)


def _hook(events: Any) -> None:
    if not _users.get(events):
        for event, handler, unique_id in _HANDLERS:
            events.register(event, handler, unique_id=unique_id)
    _users[events] = _users.get(events, 0) + 1


def _unhook(events: Any) -> None:
    _users[events] -= 1
    if not _users[events]:
        del _users[events]
        for event, handler, unique_id in _HANDLERS:
            events.unregister(event, handler, unique_id=unique_id)


def check_client(client: Any) -> None:
    """A borrowed client: an omics one, that knows ListRunsInBatch, with botocore's retries
    off (they would hide throttles from the rate controller and the counts)."""
    meta = getattr(client, "meta", None)
    config = getattr(meta, "config", None)
    model = getattr(meta, "service_model", None)
    if config is None or getattr(model, "service_name", None) != "omics":
        raise InvalidInput(f"client= must be an aiobotocore omics client, not {client!r:.60}")
    retries = getattr(config, "retries", None) or {}
    if retries.get("total_max_attempts") != 1:
        raise InvalidInput(
            "client= has botocore's own retries on; create it with "
            "botocore.config.Config(retries={'total_max_attempts': 1}) so that every retry "
            "is paced and counted here"
        )
    if not hasattr(client, "list_runs_in_batch"):
        raise InvalidInput(
            "client= has no ListRunsInBatch (its botocore predates the run-batch operations): "
            "call add_missing_operations(session) before creating it"
        )


class Dispatcher:
    """Sends one client's requests for many concurrent paginations (one account and Region).

    Use it as a context manager: its event handlers are on the client only inside.
    """

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
        self._semaphore = anyio.Semaphore(concurrency, fast_acquire=True)
        self._max_attempts = max_attempts
        self._wait = wait_random_exponential(multiplier=backoff, max=max_backoff)
        self._warned_at = -_WARN_EVERY

    def __enter__(self) -> Dispatcher:
        # A slot is held only while a request is on the wire, from botocore's before-send
        # event to its before-parse: signing and parsing (about 2.3 ms of CPU for a
        # 100-run page) then keep no slot idle. The handlers act only inside `_send`.
        _hook(self.client.meta.events)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _unhook(self.client.meta.events)

    async def call(self, operation: str, params: dict[str, Any], what: str) -> dict[str, Any]:
        """One API call with retries; raises the last error when retrying cannot help."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            code = error_code(exc) if exc else "?"
            self.stats.retries += 1
            self.stats.retries_by_error[code] = self.stats.retries_by_error.get(code, 0) + 1
            wait = state.next_action.sleep if state.next_action else 0.0
            # Failing to reach the service at all is shown at the default level (once in a
            # while): a wrong endpoint or a network down must not look like a silent hang.
            level = logging.INFO
            if exc is not None and transient_kind(exc) == "connection":
                now = time.monotonic()
                if now - self._warned_at >= _WARN_EVERY:
                    self._warned_at, level = now, logging.WARNING
            logger.log(
                level,
                "retrying %s after %s (attempt %d, in %.2fs): %s",
                what,
                code,
                state.attempt_number,
                wait,
                exc,
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
        call = _Call(self)
        token = _CALL.set(call)
        try:
            response = await method(**params)
        except Exception as exc:
            kind = transient_kind(exc)
            if kind == "throttle":
                s.throttles += 1
                if call.sent_at is not None:
                    self.rate.on_throttle(call.sent_at)
            elif kind == "timeout":
                s.timeouts += 1
            elif kind == "server_error":
                s.server_errors += 1
            elif kind == "connection":
                s.connection_errors += 1
            raise
        finally:
            call.release()
            _CALL.reset(token)
        if call.sent_at is not None:
            self.rate.on_success(call.sent_at)
        return response
