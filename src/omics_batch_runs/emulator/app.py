"""The HTTP face of the emulator: the run-batch operations in the restJson1 wire format."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

import orjson
from aiohttp import web

from ..service import BATCH_STATUSES, SUBMISSION_STATUSES
from .behaviour import Behaviour
from .dataset import Batch, Dataset
from .tokens import TokenError, TokenSigner

_STATUS_OF_ERROR = {
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "RequestTimeoutException": 408,
    "ThrottlingException": 429,
    "InternalServerException": 500,
}


@dataclass
class Counters:
    """What the emulator saw, for tests and benchmarks to check against."""

    requests: dict[str, int] = field(default_factory=dict)
    throttled: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0

    def reset(self) -> None:
        self.requests.clear()
        self.faults.clear()
        self.throttled = self.in_flight = self.max_in_flight = 0


class ServiceError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Dropped(Exception):
    """The connection was cut on purpose."""


def _error(code: str, message: str) -> web.Response:
    return web.Response(
        status=_STATUS_OF_ERROR[code],
        body=orjson.dumps({"message": message}),
        content_type="application/json",
        headers={
            "x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazonaws.omics/"
        },
    )


def _constraint(value: object, member: str, rule: str) -> ServiceError:
    return ServiceError(
        "ValidationException",
        f"1 validation error detected: Value '{value}' at '{member}' "
        f"failed to satisfy constraint: Member must {rule}",
    )


def _batch_id(request: web.Request) -> str:
    batch_id = request.match_info["batchId"]
    if not (1 <= len(batch_id) <= 18 and batch_id.isascii() and batch_id.isdigit()):
        raise _constraint(batch_id, "batchId", "satisfy regular expression pattern: [0-9]+")
    return batch_id


def _max_items(request: web.Request) -> int:
    raw = request.query.get("maxItems")
    if raw is None:
        return 100
    try:
        value = int(raw)
    except ValueError:
        raise _constraint(raw, "maxItems", "be an integer") from None
    if not 1 <= value <= 100:
        raise _constraint(raw, "maxItems", "have value between 1 and 100")
    return value


def _one_filter(request: web.Request, names: tuple[str, ...]) -> tuple[str, str] | None:
    given = [(n, request.query[n]) for n in names if n in request.query]
    if len(given) > 1:
        raise ServiceError(
            "ValidationException",
            f"Only one filter is supported per request; got {', '.join(n for n, _ in given)}",
        )
    return given[0] if given else None


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


class EmulatorApp:
    """Routes and state. One instance serves one dataset."""

    def __init__(self, dataset: Dataset, behaviour: Behaviour) -> None:
        self.dataset = dataset
        self.behaviour = behaviour
        self.counters = Counters()
        self.forbidden: set[str] = set()
        self._token_epoch = 0
        self._tokens = self._signer()
        self._page = lru_cache(maxsize=2048)(self._page_bytes)

    def _signer(self) -> TokenSigner:
        seed = f"omics-emulator:{self.dataset.seed}:{self._token_epoch}"
        return TokenSigner(hashlib.sha256(seed.encode()).digest())

    def rotate_tokens(self) -> None:
        """Refuse every token given out so far, as a service whose tokens expired would."""
        self._token_epoch += 1
        self._tokens = self._signer()
        self._page.cache_clear()

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/runBatch", self._wrap("ListBatch", self.list_batch))
        app.router.add_get("/runBatch/{batchId}", self._wrap("GetBatch", self.get_batch))
        app.router.add_get("/runBatch/{batchId}/run", self._wrap("ListRunsInBatch", self.list_runs))
        app.router.add_get("/_emulator/counters", self.counters_view)
        app.router.add_post("/_emulator/batches", self.add_view)
        app.router.add_post("/_emulator/batches/{batchId}/{action}", self.change_view)
        app.router.add_post("/_emulator/rotate-tokens", self.rotate_view)
        return app

    async def counters_view(self, request: web.Request) -> web.Response:
        """Not an AWS API: what the emulator saw, for benchmarks and tests in other processes.
        `?reset=1` zeroes the counters after reading them."""
        body = orjson.dumps(dataclasses.asdict(self.counters))
        if request.query.get("reset"):
            self.counters.reset()
        return web.Response(body=body, content_type="application/json")

    async def add_view(self, request: web.Request) -> web.Response:
        """Not an AWS API: `?sizes=100,0,2500[&submitting=1]` starts new batches."""
        try:
            sizes = [int(s) for s in request.query.get("sizes", "").split(",") if s]
            added = self.dataset.add(sizes, submitting=request.query.get("submitting") == "1")
        except ValueError as e:
            raise web.HTTPBadRequest(text=str(e)) from None
        return web.json_response({"ids": [b.id for b in added]})

    async def change_view(self, request: web.Request) -> web.Response:
        """Not an AWS API: `cancel`, `delete-runs` or `delete` a batch, as the service would."""
        actions = {
            "cancel": self.dataset.cancel,
            "delete-runs": self.dataset.delete_runs,
            "delete": self.dataset.delete,
        }
        action = actions.get(request.match_info["action"])
        if action is None:
            raise web.HTTPNotFound(text=f"actions: {', '.join(actions)}")
        try:
            action(request.match_info["batchId"])
        except KeyError:
            raise web.HTTPNotFound(text="no such batch") from None
        except ValueError as e:
            raise web.HTTPConflict(text=str(e)) from None
        return web.json_response({"ok": True})

    async def rotate_view(self, request: web.Request) -> web.Response:
        """Not an AWS API: refuse every token given out so far."""
        self.rotate_tokens()
        return web.json_response({"ok": True})

    def _wrap(self, operation: str, handler: Any) -> Any:
        async def serve(request: web.Request) -> web.StreamResponse:
            c = self.counters
            c.requests[operation] = c.requests.get(operation, 0) + 1
            c.in_flight += 1
            c.max_in_flight = max(c.max_in_flight, c.in_flight)
            try:
                return await self._serve(operation, handler, request)
            except _Dropped:
                if request.transport is not None:
                    request.transport.abort()
                raise asyncio.CancelledError from None
            finally:
                c.in_flight -= 1

        return serve

    async def _serve(self, operation: str, handler: Any, request: web.Request) -> web.Response:
        # The latency is the service's whole time to answer, its own work included.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.behaviour.delay()
        answer = self._answer(operation, handler, request)
        if (left := deadline - loop.time()) > 0:
            await asyncio.sleep(left)
        if answer is None:
            raise _Dropped
        return answer

    def _answer(self, operation: str, handler: Any, request: web.Request) -> web.Response | None:
        """The response, or None for a connection to drop."""
        b = self.behaviour
        if not request.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 "):
            return _error("AccessDeniedException", "Missing Authentication Token")
        if b.throttled(operation):
            self.counters.throttled += 1
            return _error("ThrottlingException", "Rate exceeded")
        fault = b.fault(operation)
        if fault is not None:
            self.counters.faults[fault] = self.counters.faults.get(fault, 0) + 1
            if fault == "throttle":
                self.counters.throttled += 1
                return _error("ThrottlingException", "Rate exceeded")
            if fault == "timeout":
                return _error("RequestTimeoutException", "Request timed out")
            if fault == "error":
                return _error("InternalServerException", "An internal error occurred")
            return None
        try:
            body: bytes = handler(request)
        except ServiceError as e:
            return _error(e.code, e.message)
        return web.Response(
            body=body,
            content_type="application/json",
            headers={"x-amzn-RequestId": str(uuid.uuid4())},
        )

    def _batch(self, batch_id: str) -> Batch:
        batch = self.dataset.batch(batch_id)
        if batch is None:
            raise ServiceError("ResourceNotFoundException", f"Run batch {batch_id} not found")
        if batch_id in self.forbidden:
            raise ServiceError(
                "AccessDeniedException",
                f"User is not authorized to perform omics:ListRunsInBatch on batch {batch_id}",
            )
        return batch

    def _start(self, request: web.Request, scope: str) -> int:
        token = request.query.get("startingToken")
        if token is None:
            return 0
        try:
            return self._tokens.position(scope, token)
        except TokenError:
            raise ServiceError("ValidationException", "Invalid pagination token") from None

    def list_runs(self, request: web.Request) -> bytes:
        batch_id = _batch_id(request)
        limit = _max_items(request)
        chosen = _one_filter(request, ("submissionStatus", "runSettingId", "runId"))
        if chosen and chosen[0] == "submissionStatus" and chosen[1] not in SUBMISSION_STATUSES:
            raise _constraint(
                chosen[1],
                "submissionStatus",
                f"satisfy enum value set: [{', '.join(SUBMISSION_STATUSES)}]",
            )
        batch = self._batch(batch_id)
        scope = f"runs\x00{batch_id}\x00{chosen}"
        start = self._start(request, scope)
        visible = batch.visible_runs(time.time())
        if chosen is None:
            end = min(start + limit, visible)
            token = self._tokens.issue(scope, end) if end < visible else None
            return self._page(batch, start, end, token)
        name, value = chosen
        runs: list[dict[str, Any]] = []
        if name == "submissionStatus":
            i = start
            while i < visible and len(runs) < limit:
                run = self.dataset.run(batch, i)
                if run["submissionStatus"] == value:
                    runs.append(run)
                i += 1
            token = self._tokens.issue(scope, i) if i < visible else None
        else:
            find = (
                self.dataset.index_of_run_setting_id
                if name == "runSettingId"
                else (self.dataset.index_of_run_id)
            )
            index = find(batch, value)
            if index is not None and start <= index < visible:
                runs.append(self.dataset.run(batch, index))
            token = None
        return _body("runs", orjson.dumps(runs), token)

    def _page_bytes(self, batch: Batch, start: int, end: int, token: str | None) -> bytes:
        return _body("runs", orjson.dumps(list(self.dataset.runs(batch, start, end))), token)

    def list_batch(self, request: web.Request) -> bytes:
        limit = _max_items(request)
        chosen = _one_filter(request, ("status", "name", "runGroupId"))
        if chosen and chosen[0] == "status" and chosen[1] not in BATCH_STATUSES:
            raise _constraint(
                chosen[1], "status", f"satisfy enum value set: [{', '.join(BATCH_STATUSES)}]"
            )
        scope = f"batches\x00{chosen}"
        start = self._start(request, scope)
        now = time.time()
        batches = self.dataset.positions
        items: list[dict[str, Any]] = []
        i = start
        while i < len(batches) and len(items) < limit:
            b = batches[i]
            i += 1
            if b.deleted:
                continue
            if chosen is not None:
                name, value = chosen
                field_value = {
                    "status": b.status(now),
                    "name": b.name,
                    "runGroupId": b.run_group_id,
                }
                if field_value[name] != value:
                    continue
            items.append(
                {
                    "id": b.id,
                    "name": b.name,
                    "status": b.status(now),
                    "createdAt": _iso(b.created_at),
                    "totalRuns": b.total_runs,
                    "workflowId": b.workflow_id,
                }
            )
        token = self._tokens.issue(scope, i) if i < len(batches) else None
        return _body("items", orjson.dumps(items), token)

    def get_batch(self, request: web.Request) -> bytes:
        batch = self._batch(_batch_id(request))
        now = time.time()
        visible = batch.visible_runs(now)
        n = self.dataset.submission_counts(batch, visible)
        started = visible - n["FAILED"]
        completed = n["SUCCESS"] * 9 // 10
        d = self.dataset
        body: dict[str, Any] = {
            "id": batch.id,
            "arn": f"arn:aws:omics:{d.region}:{d.account}:runBatch/{batch.id}",
            "uuid": str(uuid.UUID(int=batch.key << 64 | batch.key)),
            "name": batch.name,
            "status": batch.status(now),
            "tags": {"project": "omics-batch-runs-emulator"},
            "totalRuns": batch.total_runs,
            "defaultRunSetting": {
                "workflowId": batch.workflow_id,
                "roleArn": f"arn:aws:iam::{d.account}:role/OmicsRun",
                "runGroupId": batch.run_group_id,
            },
            "submissionSummary": {
                "successfulStartSubmissionCount": started,
                "failedStartSubmissionCount": n["FAILED"],
                "pendingStartSubmissionCount": batch.total_runs - visible,
                "successfulCancelSubmissionCount": n["CANCEL_SUCCESS"],
                "failedCancelSubmissionCount": n["CANCEL_FAILED"],
                "successfulDeleteSubmissionCount": n["DELETE_SUCCESS"],
                "failedDeleteSubmissionCount": n["DELETE_FAILED"],
            },
            "runSummary": {
                "pendingRunCount": 0,
                "startingRunCount": 0,
                "runningRunCount": n["SUCCESS"] - completed,
                "stoppingRunCount": 0,
                "completedRunCount": completed,
                "deletedRunCount": n["DELETE_SUCCESS"],
                "failedRunCount": n["DELETE_FAILED"] + n["CANCEL_FAILED"],
                "cancelledRunCount": n["CANCEL_SUCCESS"],
            },
            "creationTime": _iso(batch.created_at),
        }
        if visible == batch.total_runs:
            body["submittedTime"] = _iso(batch.created_at + 60)
        if batch.final_status == "FAILED" and visible == batch.total_runs:
            body["failedTime"] = _iso(batch.created_at + 61)
            body["failureReason"] = "The batch contained no run settings"
        return orjson.dumps(body)


def _body(key: str, listing: bytes, token: str | None) -> bytes:
    tail = b"}" if token is None else b',"nextToken":"' + token.encode() + b'"}'
    return b'{"' + key.encode() + b'":' + listing + tail
