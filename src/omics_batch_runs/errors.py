"""Every error this package raises on purpose derives from `OmicsBatchRunsError`."""

from __future__ import annotations

from collections.abc import Sequence

from botocore.exceptions import ClientError


class OmicsBatchRunsError(Exception):
    """The base class: catch it to catch anything this package reports."""


class InvalidInput(OmicsBatchRunsError, ValueError):
    """Input the service would refuse, or that makes no sense; found before any request."""


class UnsupportedEventLoop(OmicsBatchRunsError, RuntimeError):
    """aiobotocore runs on asyncio only: under trio, say so at once instead of retrying. And
    an `AdaptiveRate` paces one event loop at a time."""


def error_code(exc: BaseException) -> str:
    """The service's error code, or the exception's class name for transport errors."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


def error_message(exc: BaseException) -> str:
    """The service's message where it gave one, else the exception's text."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Message", "")) or str(exc)
    return str(exc)


class BatchError(OmicsBatchRunsError):
    """A batch that failed for good: not found, access denied, or retries exhausted."""

    def __init__(self, batch_id: str, error: BaseException) -> None:
        self.batch_id = batch_id
        # Without its traceback: thousands of failed batches must not keep their frames.
        self.error = error.with_traceback(None)
        error.__context__ = None
        self.code = error_code(error)
        super().__init__(f"batch {batch_id}: {self.code}: {error_message(error)}")


class BatchesFailed(OmicsBatchRunsError):
    """Raised at the end of a fetch when some batches failed and no `on_error` was given."""

    def __init__(self, errors: Sequence[BatchError]) -> None:
        self.errors = list(errors)
        names = ", ".join(e.batch_id for e in self.errors[:5])
        more = f" and {len(self.errors) - 5} more" if len(self.errors) > 5 else ""
        super().__init__(f"{len(self.errors)} batch(es) failed: {names}{more}")
