import pytest

from omics_batch_runs import FetchStats, InvalidInput
from omics_batch_runs.client import open_client
from omics_batch_runs.discovery import batch_filter, list_batches, total_runs
from omics_batch_runs.dispatch import Dispatcher
from omics_batch_runs.emulator import Emulator
from omics_batch_runs.rate import AdaptiveRate


def test_batch_filter_checks() -> None:
    assert batch_filter() == {}
    assert batch_filter(status="PROCESSED") == {"status": "PROCESSED"}
    with pytest.raises(InvalidInput, match="at most one"):
        batch_filter(status="PROCESSED", name="x")
    with pytest.raises(InvalidInput, match="unknown batch status"):
        batch_filter(status="DONE")
    with pytest.raises(InvalidInput, match="run group"):
        batch_filter(run_group_id="abc")


async def test_list_batches_pages_through_all(emulator: Emulator) -> None:
    async with open_client(endpoint_url=emulator.endpoint_url) as omics:
        stats = FetchStats()
        with Dispatcher(
            omics, concurrency=2, rate=AdaptiveRate(), stats=stats, max_attempts=3
        ) as dispatcher:
            items = [i async for i in list_batches(dispatcher, {})]
            assert [i["id"] for i in items] == emulator.batch_ids
            processed = [i async for i in list_batches(dispatcher, {"status": "PROCESSED"})]
            assert processed and all(i["status"] == "PROCESSED" for i in processed)
            batch = emulator.dataset.batches[1]
            assert await total_runs(dispatcher, batch.id) == batch.total_runs
            assert await total_runs(dispatcher, "999") is None
            assert stats.max_in_flight >= 1 and stats.in_flight == 0
