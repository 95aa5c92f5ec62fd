"""`sync`: bring a local mirror (SQLite) up to date with the fewest requests.

Which batches are listed again: a batch's run list (ListRunsInBatch) changes only while
runs are being submitted (CREATING, PENDING, SUBMITTING: the list grows), cancelled
(STOPPING: submitted runs become CANCEL_*) or deleted (RUNS_DELETING: they become
DELETE_*). In INPROGRESS, PROCESSED, FAILED, CANCELLED, RUNS_DELETED and RUNS_DELETE_FAILED
it cannot change; so a batch listed to its end in one of those, and still in that status
with the same totalRuns, is not listed again. INPROGRESS becoming PROCESSED is runs
finishing, which changes no submission: not listed again either. Any other move, any
status this program does not know, a new batch, or a listing cut short: listed.

What decides: ListBatch (100 batches a request, with status and totalRuns) for
`--all-batches`, and for explicit ids whichever costs fewer requests of ListBatch scan
and GetBatch per id. A batch in the mirror that the service no longer knows (404) stays
in the mirror with all its rows, marked deleted.

With `run_status=True`, ListRuns (with `batchId`, on its own rate controller) adds each
submitted run's execution status; a batch whose runs had all ended when GetBatch was last
asked (its runSummary) is not asked about again.

Following (`follow=True`): until every selected batch has settled, the unsettled ones are
polled (GetBatch, its own quota) and listed again; a batch still submitting goes on from
the token of its last page read, not from its first page.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError

from .client import check_endpoint_url, open_client
from .discovery import list_batches, pages, side_dispatcher
from .dispatch import Dispatcher
from .errors import BatchError, InvalidInput, error_code
from .export import ExportProgress
from .mirror import BatchRow, Mirror
from .options import FetchOptions, Selection, check_batch_id
from .paging import open_pages
from .rate import AdaptiveRate
from .stats import FetchStats

logger = logging.getLogger("omics_batch_runs")

SETTLED = frozenset(
    ("INPROGRESS", "PROCESSED", "FAILED", "CANCELLED", "RUNS_DELETED", "RUNS_DELETE_FAILED")
)
GROWING = frozenset(("CREATING", "PENDING", "SUBMITTING"))
_GET_BATCH_FIRST = 50  # explicit ids up to this many: GetBatch each, unless a scan is known cheaper


def needs_listing(row: BatchRow) -> bool:
    """Whether this batch's run list may differ from what the mirror holds."""
    if row.deleted:
        return False
    if row.next_token is not None or row.last_listed is None:
        return True  # a listing cut short, or never listed
    if row.status not in SETTLED or row.total_runs != row.listed_total:
        return True
    if row.status == row.listed_status:
        return False
    return not (row.listed_status == "INPROGRESS" and row.status == "PROCESSED")


def _start_token(row: BatchRow) -> str | None:
    """Where a listing starts: where it was cut short, or (a batch that has only grown since)
    the last page read, which the service answers again with what was added after it."""
    if row.next_token is not None:
        return row.next_token
    grew_only = row.listed_status in GROWING and row.status in GROWING | {"INPROGRESS", "PROCESSED"}
    return row.last_token if grew_only else None


@dataclass
class SyncResult:
    """What a sync did, and what it cost."""

    batches: int = 0  # selected
    listed: int = 0  # listed, in whole or in part
    skipped: int = 0  # settled and unchanged: not listed
    added: int = 0  # runs new to the mirror
    changed: int = 0  # runs whose fields changed
    deleted: int = 0  # batches found gone upstream (kept, marked)
    failed: list[BatchError] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)  # by operation
    export_requests: int = 0  # what a full export of the same batches would send
    settled: int = 0
    passes: int = 0
    executions_changed: int = 0  # with run_status: execution statuses new or changed


class _Syncer:
    def __init__(
        self,
        mirror: Mirror,
        omics: Any,
        options: FetchOptions,
        progress: ExportProgress,
        result: SyncResult,
    ) -> None:
        self.mirror, self.omics, self.options = mirror, omics, options
        self.progress, self.result = progress, result
        self.list_stats, self.get_stats, self.runs_stats = FetchStats(), FetchStats(), FetchStats()
        self.rate = AdaptiveRate(options.max_rps)  # ListRunsInBatch's, kept across passes
        self.described: set[str] = set()  # GetBatch answered in this sync

    async def scan(self, discover: dict[str, str]) -> list[str]:
        """Every batch ListBatch lists (with the filter), recorded in the mirror."""
        ids: list[str] = []
        with side_dispatcher(self.omics, self.list_stats, self.options) as lister:
            page: list[dict[str, Any]] = []
            async for item in list_batches(lister, discover):
                ids.append(item["id"])
                page.append(item)
                if len(page) == 100:
                    self.mirror.saw_batches(page)
                    page = []
            self.mirror.saw_batches(page)
        if not discover:
            self.mirror.set_meta("batches_listed", str(len(ids)))
        return ids

    async def get(self, batch_ids: Sequence[str]) -> None:
        """GetBatch each: its status, totalRuns and settings, or that it is gone."""
        with side_dispatcher(self.omics, self.get_stats, self.options) as getter:
            for batch_id in batch_ids:
                try:
                    answer = await getter.call("get_batch", {"batchId": batch_id}, "GetBatch")
                except (ClientError, BotoCoreError) as e:
                    self.lost(batch_id, e)
                    continue
                answer.pop("ResponseMetadata", None)
                self.mirror.saw_batches([answer], get_batch=True)
                self.described.add(batch_id)

    async def executions(self, ids: list[str]) -> None:
        """ListRuns for each batch whose runs have not all ended, on ListRuns' own quota."""
        todo = []
        for batch_id in ids:
            known = self.mirror.get_batch(batch_id)
            if known is None or not known["executionsFinal"]:
                todo.append(batch_id)
        await self.get([b for b in todo if b not in self.described])
        rate = AdaptiveRate(self.options.max_rps)  # another API, another quota
        batches = iter(todo)
        with Dispatcher(
            self.omics,
            concurrency=self.options.concurrency,
            rate=rate,
            stats=self.runs_stats,
            max_attempts=self.options.max_attempts,
            backoff=self.options.backoff,
        ) as lister:

            async def worker() -> None:
                for batch_id in batches:  # shared: each batch goes to one worker
                    await self._page_executions(lister, batch_id)

            async with anyio.create_task_group() as tg:
                for _ in range(min(self.options.concurrency, len(todo))):
                    tg.start_soon(worker)

    async def _page_executions(self, lister: Dispatcher, batch_id: str) -> None:
        answer = self.mirror.get_batch(batch_id)
        if answer is None:
            return  # GetBatch failed: reported already
        params = {"batchId": batch_id, "maxResults": 100}
        try:
            async for page in pages(lister, "list_runs", params, f"ListRuns batch {batch_id}"):
                changed = self.mirror.write_executions(batch_id, page.get("items", ()))
                self.result.executions_changed += changed
        except (ClientError, BotoCoreError) as e:
            self.lost(batch_id, e)
            return
        if _all_ended(answer):  # as GetBatch said before this listing: nothing moves now
            self.mirror.executions_final(batch_id)

    def lost(self, batch_id: str, error: BaseException) -> None:
        """A batch the service would not describe or list: gone (404), or failed."""
        if error_code(error) == "ResourceNotFoundException" and self.mirror.mark_deleted(batch_id):
            logger.info("batch %s is gone upstream; kept in the mirror, marked deleted", batch_id)
            self.result.deleted += 1
            return
        failure = BatchError(batch_id, error)
        if all(f.batch_id != batch_id for f in self.result.failed):
            self.result.failed.append(failure)
            self.progress.failed.append(failure)

    async def select(self, selection: Selection) -> tuple[list[str], set[str]]:
        """The selected batches, with their statuses fresh in the mirror; and those new to
        the mirror whose status is left for the listing to fetch, just before it starts."""
        if selection.discover is not None:
            ids = await self.scan(selection.discover)
            listed = set(ids)
            gone = [
                b.id
                for b in self.mirror.batches().values()
                if not b.deleted and b.id not in listed and _matches(b, selection.discover)
            ]
            await self.get(gone)  # gone from the listing: deleted, or moved out of the filter
            return ids, set()
        ids = list(dict.fromkeys(selection.batch_ids))
        known_ids = self.mirror.batches(ids)
        ids = [b for b in ids if not (b in known_ids and known_ids[b].deleted)]  # nothing more
        hint = self.mirror.meta("batches_listed")  # from the last full ListBatch scan
        known = int(hint) if hint is not None else None
        scan_cost = math.ceil(known / 100) + 1 if known is not None else None
        if (scan_cost is not None and scan_cost < len(ids)) or (
            scan_cost is None and len(ids) > _GET_BATCH_FIRST
        ):
            listed = set(await self.scan({}))
            await self.get([b for b in ids if b not in listed])
            return ids, set()
        await self.get([b for b in ids if b in known_ids])
        # New batches are listed whatever their status: each one's GetBatch is sent just
        # before its listing (on GetBatch's own quota), not all of them before any listing.
        return ids, {b for b in ids if b not in known_ids}

    async def list(
        self, todo: list[str], rows: dict[str, BatchRow], new: Collection[str] = ()
    ) -> None:
        """List these batches, each page committed with its batch's next token."""
        again: list[str] = []
        tokens = {b: t for b in todo if b in rows and (t := _start_token(rows[b])) is not None}

        async def described_first() -> AsyncIterator[str]:
            for batch_id in todo:
                if batch_id in new:
                    await self.get([batch_id])
                    found = self.mirror.batches([batch_id])
                    if batch_id not in found or found[batch_id].deleted:
                        continue  # not found: reported as failed
                    rows[batch_id] = found[batch_id]
                yield batch_id

        def on_error(error: BatchError) -> None:
            if error.batch_id in tokens and error.code == "ValidationException":
                logger.warning(
                    "the service refused the saved token of batch %s; listing it again from "
                    "its first page (rows are updated in place, never duplicated)",
                    error.batch_id,
                )
                self.mirror.restart(error.batch_id)
                again.append(error.batch_id)
            else:
                self.lost(error.batch_id, error.error)

        async with open_pages(
            described_first() if new else todo,
            self.options,
            client=self.omics,
            stats=self.progress.stats,
            rate=self.rate,
            on_error=on_error,
            start_tokens=tokens,
        ) as pages:
            async for page in pages:
                row = rows[page.batch_id]
                for run in page.runs:
                    if run.get("runArn"):
                        self.mirror.bind("account", run["runArn"].split(":")[4], "account")
                        break
                counts = self.mirror.write_page(
                    page.batch_id,
                    page.runs,
                    page.token,
                    page.next_token,
                    row.status,
                    row.total_runs,
                )
                self.result.added += counts.added
                self.result.changed += counts.changed
                self.progress.runs_written += counts.added
                if page.next_token is None and row.status in SETTLED:
                    self.progress.batches_done += 1
        if again:
            fresh = self.mirror.batches(again)
            await self.list(again, fresh)


def _all_ended(answer: dict[str, Any]) -> bool:
    """GetBatch says every run was submitted and has ended (its counts, missing as 0)."""
    runs, submissions = answer.get("runSummary", {}), answer.get("submissionSummary", {})
    active = ("pendingRunCount", "startingRunCount", "runningRunCount", "stoppingRunCount")
    return (
        answer.get("status") in SETTLED
        and not submissions.get("pendingStartSubmissionCount", 0)
        and not sum(runs.get(k, 0) for k in active)
    )


def _matches(row: BatchRow, discover: dict[str, str]) -> bool:
    """Whether a known batch was in this ListBatch selection, as far as the mirror knows."""
    if "status" in discover:
        return row.status == discover["status"]
    if "name" in discover:
        return row.name == discover["name"]
    return "runGroupId" not in discover  # the mirror does not keep run groups: not judged


async def sync(
    db: str | Path,
    selection: Selection,
    options: FetchOptions | None = None,
    *,
    session: Any = None,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    follow: bool = False,
    poll_interval: float = 5.0,
    run_status: bool = False,
    progress: ExportProgress | None = None,
) -> SyncResult:
    """Bring the mirror at `db` up to date for `selection`; see the module's docstring.

    The database is opened and checked before any request (`MirrorError`: not a mirror,
    another version, another Region, in use by another sync).
    """
    options = options if options is not None else FetchOptions()
    if any(v is not None for v in options.filters().values()):
        raise InvalidInput("sync mirrors every run of a batch: give FetchOptions no run filter")
    if selection.discover is not None and selection.batch_ids:
        raise InvalidInput("give a Selection batch ids or discover, not both")
    selection = Selection([check_batch_id(b) for b in selection.batch_ids], selection.discover)
    if endpoint_url is not None:
        check_endpoint_url(endpoint_url)
    progress = progress if progress is not None else ExportProgress()
    result = SyncResult()
    mirror = Mirror.open(db)
    try:
        async with open_client(
            session=session,
            endpoint_url=endpoint_url,
            region_name=region_name,
            pool=options.concurrency + 2,
        ) as omics:
            mirror.bind("region", omics.meta.region_name, "Region")
            syncer = _Syncer(mirror, omics, options, progress, result)
            try:
                ids = await _passes(syncer, selection, follow, poll_interval)
                if run_status:  # GetBatch each batch still moving: its settings are kept too
                    live = mirror.batches(ids)
                    await syncer.executions([b for b in ids if b in live and not live[b].deleted])
            finally:
                result.requests = {
                    "ListBatch": syncer.list_stats.requests,
                    "GetBatch": syncer.get_stats.requests,
                    "ListRunsInBatch": progress.stats.requests,
                    "ListRuns": syncer.runs_stats.requests,
                }
    finally:
        mirror.close()
    return result


async def _passes(
    syncer: _Syncer, selection: Selection, follow: bool, poll_interval: float
) -> list[str]:
    result, progress, mirror = syncer.result, syncer.progress, syncer.mirror
    ids, new = await syncer.select(selection)
    listed: set[str] = set()
    progress.batches_total = result.batches = len(ids)
    held = mirror.run_counts()
    progress.runs_written = sum(held.get(b, 0) for b in ids)
    while True:
        result.passes += 1
        rows = mirror.batches(ids)
        todo = [b for b in ids if b in new or (b in rows and needs_listing(rows[b]))]
        if result.passes == 1:
            result.skipped = len(ids) - len(todo)
        progress.batches_done = sum(1 for b in ids if b in rows and _settled(rows[b]))
        listed.update(todo)
        result.listed = len(listed)
        await syncer.list(todo, rows, new)
        new = set()
        rows = mirror.batches(ids)
        if result.passes == 1:
            result.export_requests = _export_cost(rows.values(), selection, syncer.options)
        unsettled = [b for b in ids if b in rows and not _settled(rows[b])]
        unsettled = [b for b in unsettled if all(f.batch_id != b for f in result.failed)]
        result.settled = progress.batches_done = len(ids) - len(unsettled)
        if not follow or not unsettled:
            progress.complete = not unsettled
            return ids
        logger.info(
            "%d batch(es) still moving; polling again in %.0f s", len(unsettled), poll_interval
        )
        await anyio.sleep(poll_interval)
        await syncer.get(unsettled)


def _settled(row: BatchRow) -> bool:
    return row.deleted or (row.status in SETTLED and not needs_listing(row))


def _export_cost(rows: Any, selection: Selection, options: FetchOptions) -> int:
    """Requests a full export of these batches would send (no retries counted)."""
    pages = sum(
        max(1, math.ceil((row.total_runs or 0) / options.page_size))
        for row in rows
        if not row.deleted
    )
    if selection.discover is not None:
        pages += max(1, math.ceil(len(rows) / 100))
    return int(pages)
