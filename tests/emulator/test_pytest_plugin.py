"""The fixture users get by installing the package (the pytest11 entry point)."""

from omics_batch_runs import iter_runs
from omics_batch_runs.emulator import Emulator


async def test_the_omics_emulator_fixture_serves_runs(omics_emulator: Emulator) -> None:
    runs = [
        r
        async for r in iter_runs(omics_emulator.batch_ids, endpoint_url=omics_emulator.endpoint_url)
    ]
    assert len(runs) == sum(b.total_runs for b in omics_emulator.dataset.batches)
