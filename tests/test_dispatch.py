from typing import Any

import anyio
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from omics_batch_runs import FetchStats
from omics_batch_runs.client import open_client
from omics_batch_runs.dispatch import Dispatcher, transient_kind
from omics_batch_runs.emulator import Emulator
from omics_batch_runs.errors import error_code
from omics_batch_runs.rate import AdaptiveRate


def client_error(code: str, status: int) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "ListRunsInBatch")  # type: ignore[arg-type]


def test_what_is_retried() -> None:
    assert transient_kind(client_error("ThrottlingException", 429)) == "throttle"
    assert transient_kind(client_error("RequestTimeoutException", 408)) == "timeout"
    assert transient_kind(client_error("InternalServerException", 500)) == "server_error"
    assert transient_kind(client_error("BadGateway", 502)) == "server_error"
    # Any 429 is throttling, whatever code a gateway or proxy gives it.
    assert transient_kind(client_error("TooManyRequestsException", 429)) == "throttle"
    assert transient_kind(client_error("SlowDown", 429)) == "throttle"
    assert transient_kind(ConnectionClosedError(endpoint_url="x")) == "connection"
    assert transient_kind(EndpointConnectionError(endpoint_url="x")) == "connection"


def test_what_is_not_retried() -> None:
    for code, status in [
        ("ValidationException", 400),
        ("AccessDeniedException", 403),
        ("ResourceNotFoundException", 404),
        ("ConflictException", 409),
    ]:
        assert transient_kind(client_error(code, status)) is None
    assert transient_kind(ValueError("bug")) is None
    assert error_code(client_error("ValidationException", 400)) == "ValidationException"
    assert error_code(ValueError()) == "ValueError"


async def test_a_call_past_the_wire_leaves_its_slot_to_the_next(emulator: Emulator) -> None:
    """One slot. The first call is held after its response (as botocore's parsing would
    hold it); the second must still get on the wire while the first is held."""
    async with open_client(endpoint_url=emulator.endpoint_url) as omics:
        stats = FetchStats()
        with Dispatcher(
            omics, concurrency=1, rate=AdaptiveRate(), stats=stats, max_attempts=1
        ) as dispatcher:
            first_held, second_done = anyio.Event(), anyio.Event()

            async def hold_the_first(**_: Any) -> None:
                if not first_held.is_set():
                    first_held.set()
                    with anyio.fail_after(5):  # the whole-call semaphore would wait here for ever
                        await second_done.wait()

            omics.meta.events.register("after-call.omics.ListRunsInBatch", hold_the_first)
            params = {"batchId": emulator.batch_ids[0], "maxItems": 1}
            async with anyio.create_task_group() as tg:
                tg.start_soon(dispatcher.call, "list_runs_in_batch", params, "first")
                await first_held.wait()
                await dispatcher.call("list_runs_in_batch", params, "second")
                second_done.set()
            assert stats.requests == 2 and stats.max_in_flight == 1 and stats.in_flight == 0
            assert emulator.counters.max_in_flight == 1
