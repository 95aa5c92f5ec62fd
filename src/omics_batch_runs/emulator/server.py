"""Running the emulator: in-process for tests and apps, or as a foreground server."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
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

    @property
    def batch_ids(self) -> list[str]:
        return [b.id for b in self.dataset.batches]

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
        )
    finally:
        await runner.cleanup()


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
