"""A StartRunBatch input that runs again what did not make it, as AWS documents the remedy:
a new batch with the same `defaultRunSetting` and only the `runSettingId`s that failed,
each with its original settings, unchanged. There is no built-in retry; this is it."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .errors import InvalidInput
from .failures import failures
from .mirror import Mirror

INLINE_LIMIT = 100  # StartRunBatch's inlineSettings hold at most this many

# What StartRunBatch's defaultRunSetting accepts (botocore's DefaultRunSetting): GetBatch
# reports the same shape, and anything else it might add is left out.
DEFAULT_RUN_SETTING_FIELDS = frozenset(
    (
        "workflowId",
        "workflowType",
        "roleArn",
        "name",
        "cacheId",
        "cacheBehavior",
        "runGroupId",
        "priority",
        "parameters",
        "storageCapacity",
        "outputUri",
        "logLevel",
        "runTags",
        "retentionMode",
        "storageType",
        "workflowOwnerId",
        "outputBucketOwnerId",
        "workflowVersionName",
        "networkingMode",
        "configurationName",
        "sessionPolicy",
        "engineSettings",
        "scratchStorageMode",
    )
)


@dataclass(frozen=True)
class Resubmission:
    """The StartRunBatch input, and (over 100 runs) the settings file it names on S3."""

    request: dict[str, Any]
    settings: list[dict[str, Any]]  # the chosen entries, as they were in the original
    s3_settings: list[dict[str, Any]] | None  # to upload to `settings_uri`, if not inline


def read_settings(path: str | Path) -> list[dict[str, Any]]:
    """The original per-run settings: the JSON list given as inlineSettings or on S3."""
    try:
        data = orjson.loads(Path(path).read_bytes().removeprefix(b"\xef\xbb\xbf"))
    except OSError as e:
        raise InvalidInput(f"cannot read --settings {path}: {e.strerror}") from None
    except orjson.JSONDecodeError:
        raise InvalidInput(f"--settings {path} is not JSON") from None
    if isinstance(data, dict) and "inlineSettings" in data.get("batchRunSettings", {}):
        data = data["batchRunSettings"]["inlineSettings"]  # a StartRunBatch input: its list
    if not isinstance(data, list) or not all(
        isinstance(e, dict) and isinstance(e.get("runSettingId"), str) for e in data
    ):
        raise InvalidInput(
            f"--settings {path} is not a list of run settings (objects with a runSettingId)"
        )
    seen: set[str] = set()
    for entry in data:
        if entry["runSettingId"] in seen:
            raise InvalidInput(
                f"--settings {path} lists runSettingId {entry['runSettingId']} twice"
            )
        seen.add(entry["runSettingId"])
    return data


def resubmission(
    db: str | Path,
    batch_id: str,
    settings: Sequence[dict[str, Any]],
    *,
    reasons: Collection[str] = (),
    include_run_failures: bool = False,
    settings_uri: str | None = None,
) -> Resubmission:
    """The input for a batch that runs again the chosen failures of `batch_id`.

    `reasons`: only submissions that failed for these (all, if empty); with
    `include_run_failures`, also runs submitted that then failed or were cancelled. Over 100
    entries, the settings go to `settings_uri` (S3), which the input names. The requestId
    is derived from the batch and the chosen runs: the same file submitted twice starts one
    batch. Raises InvalidInput (nothing chosen, an id the settings lack, ...)."""
    mirror = Mirror.open(db, create=False)
    try:
        answer = mirror.get_batch(batch_id)
        known = mirror.query("SELECT name FROM batches WHERE id = ?", (batch_id,))
        statuses = mirror.query("SELECT count(*) FROM executions WHERE batch_id = ?", (batch_id,))
    finally:
        mirror.close()
    if not known:
        raise InvalidInput(f"batch {batch_id} is not in the mirror: sync it first")
    if include_run_failures and not statuses[0][0]:
        raise InvalidInput(
            f"the mirror has no execution status for batch {batch_id}: "
            "run `omics-batch-runs sync --run-status` first"
        )
    if answer is None or "defaultRunSetting" not in answer:
        raise InvalidInput(
            f"the mirror has no GetBatch answer for batch {batch_id}: run "
            f"`omics-batch-runs sync --run-status` (or `sync {batch_id}`) first"
        )
    chosen = [
        f
        for f in failures(db, [batch_id], runs=include_run_failures)
        if f.stage == "run" or not reasons or f.reason in reasons
    ]
    if not chosen:
        raise InvalidInput(f"batch {batch_id} has no failures of that kind to run again")
    by_id = {e["runSettingId"]: e for e in settings}
    missing = [f.run_setting_id for f in chosen if f.run_setting_id not in by_id]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise InvalidInput(
            f"the settings file lacks runSettingId {', '.join(missing[:3])}{more} "
            f"of batch {batch_id}: is it the batch's original settings?"
        )
    wanted = {f.run_setting_id for f in chosen}
    entries = [e for e in settings if e["runSettingId"] in wanted]  # the original order
    if len(entries) > INLINE_LIMIT and settings_uri is None:
        raise InvalidInput(
            f"{len(entries)} runs to submit, more than the {INLINE_LIMIT} StartRunBatch takes "
            "inline: give --settings-uri s3://... for the settings file"
        )
    bucket, _, key = (settings_uri or "").removeprefix("s3://").partition("/")
    if settings_uri is not None and (not settings_uri.startswith("s3://") or not bucket or not key):
        raise InvalidInput(f"--settings-uri {settings_uri!r} is not an s3://bucket/key URI")
    # Derived from the batch and the chosen runs' settings: the same input, the same batch;
    # a run whose settings were corrected since is a new request.
    digest = hashlib.sha256(orjson.dumps([batch_id, entries], option=orjson.OPT_SORT_KEYS))
    digest_text = digest.hexdigest()
    default = {
        k: v for k, v in answer["defaultRunSetting"].items() if k in DEFAULT_RUN_SETTING_FIELDS
    }
    inline = settings_uri is None
    request: dict[str, Any] = {
        "batchName": f"retry-of-{batch_id}",
        "requestId": f"omics-batch-runs-{digest_text[:32]}",
        "defaultRunSetting": default,
        "batchRunSettings": {"inlineSettings": entries}
        if inline
        else {"s3UriSettings": settings_uri},
    }
    return Resubmission(request, entries, None if inline else entries)
