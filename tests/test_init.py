"""The public surface is what `__all__` says, no more: anything else is private."""

import omics_batch_runs
import omics_batch_runs.emulator
from omics_batch_runs import OmicsBatchRunsError

PUBLIC = {
    "AdaptiveRate",
    "BatchError",
    "BatchesFailed",
    "FetchOptions",
    "FetchStats",
    "InvalidInput",
    "MirrorError",
    "OmicsBatchRunsError",
    "Page",
    "PageStream",
    "RunStream",
    "Selection",
    "SyncResult",
    "UnsupportedEventLoop",
    "__version__",
    "add_missing_operations",
    "iter_pages",
    "iter_runs",
    "open_pages",
    "open_runs",
    "sync",
}
EMULATOR = {
    "Batch",
    "Behaviour",
    "Counters",
    "Dataset",
    "Emulator",
    "Fault",
    "demo_service",
    "run_emulator",
    "run_emulator_in_thread",
    "serve_forever",
}


def test_the_public_names_are_pinned() -> None:
    assert set(omics_batch_runs.__all__) == PUBLIC
    assert set(omics_batch_runs.emulator.__all__) == EMULATOR
    for module in (omics_batch_runs, omics_batch_runs.emulator):
        for name in module.__all__:
            assert getattr(module, name) is not None


def test_every_error_the_library_raises_on_purpose_has_one_base() -> None:
    errors = [
        getattr(omics_batch_runs, name)
        for name in omics_batch_runs.__all__
        if isinstance(getattr(omics_batch_runs, name), type)
        and issubclass(getattr(omics_batch_runs, name), BaseException)
    ]
    assert len(errors) == 6
    assert all(issubclass(e, OmicsBatchRunsError) for e in errors)
