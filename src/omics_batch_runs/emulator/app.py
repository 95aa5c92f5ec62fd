"""The HTTP face of the emulator: the run-batch operations in the restJson1 wire format."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

import orjson
from aiohttp import web

from ..service import BATCH_STATUSES, MAX_RUNS_PER_BATCH, SUBMISSION_STATUSES
from .behaviour import Behaviour, check_neighbour
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
    neighbour_requests: int = 0
    neighbour_throttled: int = 0

    def reset(self) -> None:
        self.requests.clear()
        self.faults.clear()
        self.throttled = self.in_flight = self.max_in_flight = 0
        self.neighbour_requests = self.neighbour_throttled = 0


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
        self.objects: dict[str, bytes] = {}  # S3 objects StartRunBatch may read
        self._token_epoch = 0
        self._tokens = self._signer()
        self._page = lru_cache(maxsize=2048)(self._page_bytes)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._neighbour: asyncio.Task[None] | None = None

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
        app.router.add_post("/runBatch", self._wrap("StartRunBatch", self.start_run_batch))
        app.router.add_get("/run", self._wrap("ListRuns", self.list_executions))
        app.router.add_put("/_emulator/s3", self.put_object_view)
        app.router.add_get("/_emulator/counters", self.counters_view)
        app.router.add_post("/_emulator/batches", self.add_view)
        app.router.add_post("/_emulator/batches/{batchId}/{action}", self.change_view)
        app.router.add_post("/_emulator/rotate-tokens", self.rotate_view)
        app.router.add_put("/_emulator/quota", self.quota_view)
        app.router.add_put("/_emulator/neighbour", self.neighbour_view)
        app.cleanup_ctx.append(self._neighbour_task)
        return app

    async def _neighbour_task(self, _: web.Application) -> AsyncIterator[None]:
        self._loop = asyncio.get_running_loop()
        self.set_neighbour(self.behaviour.neighbour_rps)
        yield
        self._loop = None
        if self._neighbour is not None:
            self._neighbour.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._neighbour

    def set_neighbour(self, rps: float) -> None:
        """Start, retune or stop the neighbour (0); from any thread."""
        check_neighbour(rps)
        self.behaviour.neighbour_rps = rps
        if rps > 0 and self._loop is not None:
            self._loop.call_soon_threadsafe(self._start_neighbour)

    def _start_neighbour(self) -> None:
        if self._neighbour is None or self._neighbour.done():
            self._neighbour = asyncio.create_task(self._neighbour_calls())

    async def _neighbour_calls(self) -> None:
        """Another tool on the account (an orchestrator polling, a dashboard): calls at a
        steady `neighbour_rps` on the ListRunsInBatch quota, a throttled call not retried."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        while (rps := self.behaviour.neighbour_rps) > 0:
            due = last + 1.0 / rps
            if (wait := due - loop.time()) > 0:
                # Short naps: a new rate, or a stop, applies at once.
                await asyncio.sleep(min(wait, 0.05))
                continue
            # Steady: a late wake-up does not send the calls it missed all at once.
            last = due if loop.time() - due < 1.0 / rps else loop.time()
            self.counters.neighbour_requests += 1
            if self.behaviour.throttled("ListRunsInBatch"):
                self.counters.neighbour_throttled += 1

    async def quota_view(self, request: web.Request) -> web.Response:
        """Not an AWS API: `?rate=20[&burst=20]` changes the quota now (`rate=none`: none)."""
        try:
            query = _query(request, required=("rate",), optional=("burst",))
            rate = None if query["rate"] == "none" else float(query["rate"])
            burst = float(query["burst"]) if "burst" in query else None
            self.behaviour.set_quota(rate, burst)
        except ValueError as e:
            raise web.HTTPBadRequest(text=str(e)) from None
        return web.json_response({"rate": rate, "burst": burst})

    async def neighbour_view(self, request: web.Request) -> web.Response:
        """Not an AWS API: `?rps=3` starts another tool's steady calls on the quota (0 stops)."""
        try:
            rps = float(_query(request, required=("rps",))["rps"])
            self.set_neighbour(rps)
        except ValueError as e:
            raise web.HTTPBadRequest(text=str(e)) from None
        return web.json_response({"rps": rps})

    async def counters_view(self, request: web.Request) -> web.Response:
        """Not an AWS API: what the emulator saw, for benchmarks and tests in other processes.
        `?reset=1` zeroes the counters after reading them."""
        reset = _flag(_query(request, optional=("reset",)), "reset")
        body = orjson.dumps(dataclasses.asdict(self.counters))
        if reset:
            self.counters.reset()
        return web.Response(body=body, content_type="application/json")

    async def add_view(self, request: web.Request) -> web.Response:
        """Not an AWS API: `?sizes=100,0,2500[&submitting=1]` starts new batches."""
        try:
            query = _query(request, required=("sizes",), optional=("submitting",))
            sizes = [int(s) for s in query["sizes"].split(",")]
            added = self.dataset.add(sizes, submitting=_flag(query, "submitting"))
        except ValueError as e:
            raise web.HTTPBadRequest(text=str(e)) from None
        return web.json_response({"ids": [b.id for b in added]})

    async def change_view(self, request: web.Request) -> web.Response:
        """Not an AWS API: `cancel`, `delete-runs` or `delete` a batch, as the service would."""
        actions = {
            "cancel": self.dataset.cancel,
            "delete-runs": self.dataset.delete_runs,
            "delete": self.dataset.delete,
            "forget-runs": self.dataset.forget,
        }
        action = actions.get(request.match_info["action"])
        if action is None:
            raise web.HTTPNotFound(text=f"actions: {', '.join(actions)}")
        _query(request)
        try:
            action(request.match_info["batchId"])
        except KeyError:
            raise web.HTTPNotFound(text="no such batch") from None
        except ValueError as e:
            raise web.HTTPConflict(text=str(e)) from None
        return web.json_response({"ok": True})

    async def put_object_view(self, request: web.Request) -> web.Response:
        """Not an AWS API: `?uri=s3://bucket/key` holds an object for s3UriSettings."""
        uri = _query(request, required=("uri",))["uri"]
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if not uri.startswith("s3://") or not bucket or not key:
            raise web.HTTPBadRequest(text=f"uri must be s3://bucket/key, not {uri!r}")
        self.objects[uri] = await request.read()
        return web.json_response({"ok": True})

    async def rotate_view(self, request: web.Request) -> web.Response:
        """Not an AWS API: refuse every token given out so far."""
        _query(request)
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
        payload = await request.read() if request.can_read_body else b""
        answer = self._answer(operation, handler, request, payload)
        if (left := deadline - loop.time()) > 0:
            await asyncio.sleep(left)
        if answer is None:
            raise _Dropped
        return answer

    def _answer(
        self, operation: str, handler: Any, request: web.Request, payload: bytes
    ) -> web.Response | None:
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
            answered = handler(request, payload)
            status, body = answered if isinstance(answered, tuple) else (200, answered)
        except ServiceError as e:
            return _error(e.code, e.message)
        return web.Response(
            status=status,
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

    def list_runs(self, request: web.Request, _: bytes) -> bytes:
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

    def list_batch(self, request: web.Request, _: bytes) -> bytes:
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

    def get_batch(self, request: web.Request, _: bytes) -> bytes:
        batch = self._batch(_batch_id(request))
        now = time.time()
        visible = batch.visible_runs(now)
        n = self.dataset.submission_counts(batch, visible)
        started = visible - n["FAILED"]
        runs = self.dataset.execution_counts(batch, now)
        d = self.dataset
        body: dict[str, Any] = {
            "id": batch.id,
            "arn": f"arn:aws:omics:{d.region}:{d.account}:runBatch/{batch.id}",
            "uuid": str(uuid.UUID(int=batch.key << 64 | batch.key)),
            "name": batch.name,
            "status": batch.status(now),
            "tags": {"project": "omics-batch-runs-emulator"},
            "totalRuns": batch.total_runs,
            "defaultRunSetting": batch.default_run_setting
            or {
                "workflowId": batch.workflow_id,
                "roleArn": f"arn:aws:iam::{d.account}:role/OmicsRun",
                "runGroupId": batch.run_group_id,
                "outputUri": f"s3://lab-results/{batch.name}/",
                "parameters": {"reference": "s3://lab-reference/GRCh38.fa"},
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
                "pendingRunCount": runs["PENDING"],
                "startingRunCount": runs["STARTING"],
                "runningRunCount": runs["RUNNING"],
                "stoppingRunCount": runs["STOPPING"],
                "completedRunCount": runs["COMPLETED"],
                "deletedRunCount": runs["DELETED"],
                "failedRunCount": runs["FAILED"],
                "cancelledRunCount": runs["CANCELLED"],
            },
            "creationTime": _iso(batch.created_at),
        }
        if visible == batch.total_runs:
            body["submittedTime"] = _iso(batch.created_at + 60)
        if batch.final_status == "FAILED" and visible == batch.total_runs:
            body["failedTime"] = _iso(batch.created_at + 61)
            body["failureReason"] = "The batch contained no run settings"
        return orjson.dumps(body)

    def list_executions(self, request: web.Request, _: bytes) -> bytes:
        """ListRuns: runs with their execution status, of one batch (`batchId`) or all."""
        raw = request.query.get("maxResults")
        limit = 100
        if raw is not None:
            if not raw.isdigit() or not 1 <= int(raw) <= 100:
                raise _constraint(raw, "maxResults", "have value between 1 and 100")
            limit = int(raw)
        status = request.query.get("status")
        batch_id = request.query.get("batchId")
        scope = f"exec\x00{batch_id}\x00{status}"
        position = self._start(request, scope)
        if batch_id is not None:
            only = self.dataset.batch(batch_id)
            batches = [only] if only is not None else []
        else:
            batches = list(self.dataset.batches)
        now = time.time()
        items: list[dict[str, Any]] = []
        for batch in batches:
            if batch.forgotten or (batch.ordinal + 1) * MAX_RUNS_PER_BATCH <= position:
                continue
            index = max(0, position - batch.ordinal * MAX_RUNS_PER_BATCH)
            visible = batch.visible_runs(now)
            while index < visible and len(items) < limit:
                item = self.dataset.execution(batch, index, now)
                index += 1
                if item is not None and status in (None, item["status"]):
                    items.append(item)
            position = batch.ordinal * MAX_RUNS_PER_BATCH + index
            if len(items) == limit:
                break
        more = bool(items) and len(items) == limit and position < _end(batches)
        for item in items:
            for key in ("creationTime", "startTime", "stopTime"):
                if key in item:
                    item[key] = _iso(item[key])
        token = self._tokens.issue(scope, position) if more else None
        return _body("items", orjson.dumps(items), token)

    def start_run_batch(self, request: web.Request, payload: bytes) -> tuple[int, bytes]:
        """StartRunBatch, validated as the service does; the same requestId, the same batch."""
        try:
            body = orjson.loads(payload or b"{}")
        except orjson.JSONDecodeError:
            raise ServiceError("ValidationException", "Request body is not JSON") from None
        if not isinstance(body, dict):
            raise ServiceError("ValidationException", "Request body must be an object")
        for name in ("requestId", "defaultRunSetting", "batchRunSettings"):
            if name not in body:
                raise _constraint("null", name, "not be null")
        default = body["defaultRunSetting"]
        for name in ("workflowId", "roleArn"):
            if not isinstance(default, dict) or not default.get(name):
                raise _constraint("null", f"defaultRunSetting.{name}", "not be null")
        settings = self._run_settings(body["batchRunSettings"])
        given = [s.get("runSettingId") if isinstance(s, dict) else None for s in settings]
        if not all(isinstance(i, str) and i for i in given):
            raise ServiceError("ValidationException", "Every run setting needs a runSettingId")
        ids = [str(i) for i in given]
        if len(set(ids)) != len(ids):
            raise ServiceError("ValidationException", "runSettingId values must be unique")
        batch = self.dataset.start(ids, default, str(body["requestId"]), body.get("batchName"))
        d = self.dataset
        return 201, orjson.dumps(
            {
                "id": batch.id,
                "arn": f"arn:aws:omics:{d.region}:{d.account}:runBatch/{batch.id}",
                "status": batch.status(time.time()),
                "uuid": str(uuid.UUID(int=batch.key << 64 | batch.key)),
                "tags": body.get("tags", {}),
            }
        )

    def _run_settings(self, given: Any) -> list[Any]:
        """The per-run settings: inline (1 to 100), or the S3 JSON file (up to 100,000)."""
        if not isinstance(given, dict):
            raise _constraint(given, "batchRunSettings", "be a structure")
        inline, uri = given.get("inlineSettings"), given.get("s3UriSettings")
        if (inline is None) == (uri is None):
            raise ServiceError(
                "ValidationException",
                "Exactly one of inlineSettings and s3UriSettings must be given",
            )
        if inline is not None:
            if not isinstance(inline, list) or not 1 <= len(inline) <= 100:
                raise _constraint(
                    f"list of {len(inline) if isinstance(inline, list) else '?'} items",
                    "batchRunSettings.inlineSettings",
                    "have length between 1 and 100",
                )
            return inline
        data = self.objects.get(str(uri))
        if data is None:
            raise ServiceError("ValidationException", f"Unable to read s3UriSettings {uri}")
        try:
            settings = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ServiceError("ValidationException", f"{uri} is not a JSON list") from None
        if not isinstance(settings, list) or not 1 <= len(settings) <= MAX_RUNS_PER_BATCH:
            raise ServiceError("ValidationException", f"{uri} must hold 1 to 100,000 settings")
        return settings


def _end(batches: list[Batch]) -> int:
    return max((b.ordinal + 1) * MAX_RUNS_PER_BATCH for b in batches) if batches else 0


def _body(key: str, listing: bytes, token: str | None) -> bytes:
    tail = b"}" if token is None else b',"nextToken":"' + token.encode() + b'"}'
    return b'{"' + key.encode() + b'":' + listing + tail


def _query(
    request: web.Request, *, required: tuple[str, ...] = (), optional: tuple[str, ...] = ()
) -> dict[str, str]:
    """A control call's parameters, each once, none unknown: a typo must not pass unseen.
    Anything else is a 400."""
    known = {*required, *optional}
    for name in request.query:
        if name not in known:
            takes = ", ".join(sorted(known)) if known else "none"
            raise web.HTTPBadRequest(text=f"unknown parameter {name!r}; this call takes: {takes}")
        if len(request.query.getall(name)) > 1:
            raise web.HTTPBadRequest(text=f"{name} given more than once")
    for name in required:
        if name not in request.query:
            raise web.HTTPBadRequest(text=f"{name} is required")
    return dict(request.query)


def _flag(query: dict[str, str], name: str) -> bool:
    """`1` or `0` (the default), and nothing else: `yes` or `maybe` is a 400."""
    value = query.get(name, "0")
    if value not in ("0", "1"):
        raise web.HTTPBadRequest(text=f"{name}: 1 or 0, not {value!r}")
    return value == "1"
