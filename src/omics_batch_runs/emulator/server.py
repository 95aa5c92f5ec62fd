"""Running the emulator: in-process for tests and apps, or as a foreground server."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

from aiohttp import web

from .app import Counters, EmulatorApp
from .behaviour import Behaviour, Fault
from .dataset import Dataset


@dataclass
class Emulator:
    """A running emulator: where it listens, its data, and knobs to turn while it runs."""

    endpoint_url: str
    dataset: Dataset
    behaviour: Behaviour
    counters: Counters
    forbidden: set[str]
    app: EmulatorApp

    @property
    def batch_ids(self) -> list[str]:
        return [b.id for b in self.dataset.batches]

    def add_batches(
        self, sizes: list[int], *, submitting: bool = False, pending_for: float = 0.0
    ) -> list[str]:
        """StartRunBatch: new batches, settled or still submitting; returns their ids."""
        added = self.dataset.add(sizes, submitting=submitting, pending_for=pending_for)
        return [b.id for b in added]

    def cancel_batch(self, batch_id: str) -> None:
        """CancelRunBatch: submission stops, submitted runs become CANCEL_*."""
        self.dataset.cancel(batch_id)

    def delete_runs(self, batch_id: str) -> None:
        """DeleteRunBatch: the runs become DELETE_*, the batch RUNS_DELETED."""
        self.dataset.delete_runs(batch_id)

    def forget_runs(self, batch_id: str) -> None:
        """ListRuns no longer answers for this batch's runs (the service keeps few)."""
        self.dataset.forget(batch_id)

    def put_object(self, uri: str, data: bytes) -> None:
        """An S3 object StartRunBatch's s3UriSettings may name."""
        self.app.objects[uri] = data

    def delete_batch(self, batch_id: str) -> None:
        """DeleteBatch: the batch answers 404 and leaves ListBatch."""
        self.dataset.delete(batch_id)

    def rotate_tokens(self) -> None:
        """Refuse every pagination token given out so far (as if they had expired)."""
        self.app.rotate_tokens()

    def set_quota(self, rate: float | None, burst: float | None = None) -> None:
        """Change the quota now (None: none); what the bucket holds carries over."""
        self.behaviour.set_quota(rate, burst)

    def set_neighbour(self, rps: float) -> None:
        """Another tool's steady calls on the ListRunsInBatch quota (0: none); counted in
        `counters.neighbour_requests` and `counters.neighbour_throttled`."""
        self.app.set_neighbour(rps)

    def script_faults(self, faults: list[Fault | None]) -> None:
        """Answer the next ListRunsInBatch requests with these faults, in order."""
        self.behaviour.script(faults)


@asynccontextmanager
async def run_emulator(
    dataset: Dataset | None = None,
    behaviour: Behaviour | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[Emulator]:
    """Serve the emulator on this event loop (asyncio) until the block ends. Port 0 picks one."""
    dataset = dataset if dataset is not None else Dataset()
    behaviour = behaviour if behaviour is not None else Behaviour()
    state = EmulatorApp(dataset, behaviour)
    runner = web.AppRunner(state.make_app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    bound = runner.addresses[0][1]
    url_host = f"[{host}]" if ":" in host else host
    try:
        yield Emulator(
            endpoint_url=f"http://{url_host}:{bound}",
            dataset=dataset,
            behaviour=behaviour,
            counters=state.counters,
            forbidden=state.forbidden,
            app=state,
        )
    finally:
        await runner.cleanup()


@contextmanager
def run_emulator_in_thread(
    dataset: Dataset | None = None,
    behaviour: Behaviour | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
) -> Iterator[Emulator]:
    """Serve the emulator from a thread and event loop of its own until the block ends.

    For blocking clients (boto3, the AWS CLI), plain tests, and async code on any loop:
    a blocking call cannot stall it, since it does not share the caller's loop.
    """
    started = threading.Event()
    running: list[Emulator] = []
    failed: list[BaseException] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        try:
            async with run_emulator(dataset, behaviour, host=host, port=port) as emulator:
                running.append(emulator)
                started.set()
                await stop.wait()
        except BaseException as e:
            failed.append(e)
            started.set()

    thread = threading.Thread(
        target=loop.run_until_complete, args=(serve(),), name="omics-emulator", daemon=True
    )
    thread.start()
    started.wait()
    try:
        if failed:
            raise failed[0]
        yield running[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join()
        loop.close()


def serve_forever(
    dataset: Dataset,
    behaviour: Behaviour,
    *,
    host: str,
    port: int,
    announce: Callable[[Emulator], None],
) -> None:
    """Run until SIGINT or SIGTERM, then stop cleanly."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with run_emulator(dataset, behaviour, host=host, port=port) as emulator:
            announce(emulator)
            await stop.wait()

    asyncio.run(main())
