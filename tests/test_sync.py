"""sync: the mirror against the emulator, over HTTP with the real aiobotocore client."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from omics_batch_runs import FetchOptions, InvalidInput, Selection, SyncResult, sync
from omics_batch_runs.cli import main
from omics_batch_runs.emulator import Behaviour, Dataset, Emulator, run_emulator_in_thread
from omics_batch_runs.mirror import RUN_FIELDS, Mirror

from .conftest import boto3_client, by_key, paginate_with_boto3

ALL = Selection(discover={})


def mirrored(db: Path, batch_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """The mirror's runs as ListRunsInBatch gives them (absent fields absent)."""
    columns = ", ".join(c for _, c in RUN_FIELDS)
    with sqlite3.connect(db) as c:
        rows = c.execute(f"SELECT batch_id, run_setting_id, {columns} FROM runs").fetchall()
    runs = []
    for row in rows:
        run = {"batchId": row[0], "runSettingId": row[1]}
        run.update((f, v) for (f, _), v in zip(RUN_FIELDS, row[2:], strict=True) if v is not None)
        if batch_ids is None or run["batchId"] in batch_ids:
            runs.append(run)
    return runs


def listing(emulator: Emulator) -> list[dict[str, Any]]:
    """The live batches' runs as boto3's own paginator lists them."""
    return [r for b in emulator.batch_ids for r in paginate_with_boto3(emulator.endpoint_url, b)]


def run_sync(db: Path, emulator: Emulator, selection: Selection = ALL, **kw: Any) -> SyncResult:
    emulator.counters.reset()
    return anyio.run(lambda: sync(db, selection, endpoint_url=emulator.endpoint_url, **kw))


def deleted(db: Path) -> set[str]:
    with sqlite3.connect(db) as c:
        return {r[0] for r in c.execute("SELECT id FROM batches WHERE deleted = 1")}


@pytest.fixture
def two_hundred() -> Any:
    with run_emulator_in_thread(Dataset(seed=21, batches=200)) as emulator:
        yield emulator


def test_a_first_sync_mirrors_exactly_what_boto3_lists(tmp_path: Path, served: Emulator) -> None:
    db = tmp_path / "m.db"
    result = run_sync(db, served)
    assert result.requests["ListRunsInBatch"] == served.counters.requests["ListRunsInBatch"]
    assert by_key(mirrored(db)) == by_key(listing(served))
    assert result.listed == result.batches == len(served.batch_ids)
    assert result.added == sum(b.total_runs for b in served.dataset.batches)


def test_a_resync_with_nothing_changed_lists_nothing(tmp_path: Path, two_hundred: Emulator) -> None:
    db = tmp_path / "m.db"
    run_sync(db, two_hundred)
    again = run_sync(db, two_hundred)
    assert "ListRunsInBatch" not in two_hundred.counters.requests
    assert sum(two_hundred.counters.requests.values()) <= 200 / 50
    assert (again.listed, again.skipped, again.added, again.changed) == (0, 200, 0, 0)
    assert again.export_requests > 200  # what an export would have cost


def test_explicit_ids_choose_the_cheaper_way_to_see_what_changed(
    tmp_path: Path, two_hundred: Emulator
) -> None:
    db, ids = tmp_path / "m.db", Selection(two_hundred.batch_ids)
    run_sync(db, two_hundred, ids)
    run_sync(db, two_hundred, ids)
    assert two_hundred.counters.requests == {"ListBatch": 2}  # not 200 GetBatch
    few = Selection(two_hundred.batch_ids[:3])
    run_sync(db, two_hundred, few)
    assert two_hundred.counters.requests == {"GetBatch": 3}  # not a scan of 200


def test_new_batches_are_described_as_their_listing_starts(
    tmp_path: Path, served: Emulator
) -> None:
    """No GetBatch round for all of them first: each one's comes just before its listing."""
    db, ids = tmp_path / "m.db", served.batch_ids[:3]
    result = run_sync(db, served, Selection([*ids, "999"]))
    assert served.counters.requests["GetBatch"] == 4
    assert [f.code for f in result.failed] == ["ResourceNotFoundException"]
    assert by_key(mirrored(db)) == by_key([r for r in listing(served) if r["batchId"] in ids])
    with sqlite3.connect(db) as c:
        statuses = c.execute("SELECT listed_status FROM batches ORDER BY id").fetchall()
    assert None not in {s for (s,) in statuses}


def test_moved_deleted_and_new_batches_are_listed_and_nothing_else(
    tmp_path: Path, two_hundred: Emulator
) -> None:
    db, now = tmp_path / "m.db", time.time()
    run_sync(db, two_hundred)
    batches = [b for b in two_hundred.dataset.batches if b.total_runs]
    running = [b.id for b in batches if b.status(now) == "INPROGRESS"][:2]
    gone = next(b.id for b in batches if b.status(now) == "PROCESSED")
    gone_rows = [r for r in mirrored(db) if r["batchId"] == gone]
    before = by_key(mirrored(db, running))
    for batch_id in running:
        two_hundred.cancel_batch(batch_id)
    two_hundred.delete_batch(gone)
    new = two_hundred.add_batches([150, 0, 1234])
    listed: list[str] = []
    real = Mirror.write_page

    def spy(self: Mirror, batch_id: str, *args: Any) -> Any:
        listed.append(batch_id)
        return real(self, batch_id, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Mirror, "write_page", spy)
        result = run_sync(db, two_hundred)
    assert set(listed) == {*running, *new}
    assert (result.listed, result.deleted) == (5, 1)
    after = by_key(mirrored(db, running))
    assert result.changed == sum(1 for k, r in after.items() if before[k] != r) > 0
    assert deleted(db) == {gone}
    live = by_key(mirrored(db, two_hundred.batch_ids))
    assert live == by_key(listing(two_hundred))  # field by field
    assert by_key(mirrored(db, [gone])) == by_key(gone_rows)  # kept as it was


def test_follow_ends_once_every_batch_has_settled(tmp_path: Path) -> None:
    data = Dataset(seed=22, sizes=[900, 450, 30], submitting=3, submit_rate=400.0)
    with run_emulator_in_thread(data) as emulator:
        db = tmp_path / "m.db"
        assert emulator.dataset.batches[0].status(time.time()) == "SUBMITTING"
        result = run_sync(db, emulator, follow=True, poll_interval=0.3)
        now = time.time()
        assert all(b.status(now) == "INPROGRESS" for b in emulator.dataset.batches)
        assert result.settled == 3 and result.passes > 1
        assert by_key(mirrored(db)) == by_key(listing(emulator))
        final_pages = sum(-(-b.total_runs // 100) for b in emulator.dataset.batches)
        assert result.requests["ListRunsInBatch"] < 2 * final_pages


def test_a_refused_token_lists_the_batch_again_without_duplicates(tmp_path: Path) -> None:
    data = Dataset(seed=23, sizes=[2000], submitting=1, submit_rate=1000.0)
    with run_emulator_in_thread(data) as emulator:
        db = tmp_path / "m.db"
        run_sync(db, emulator)  # part of it: it is still submitting
        emulator.rotate_tokens()  # the saved token of its last page is no longer accepted
        time.sleep(2.1)
        run_sync(db, emulator)
        assert by_key(mirrored(db)) == by_key(listing(emulator))


@pytest.mark.parametrize("seed", [31])
def test_kill_9_at_random_moments_then_the_same_command_mirrors_exactly(
    tmp_path: Path, seed: int
) -> None:
    """A first sync of 150 batches under faults, killed again and again, then run to the end."""
    faults = ["--fault-rate", "0.05", "--rate", "300", "--burst", "50", "--latency-ms", "5"]
    command = [sys.executable, "-m", "omics_batch_runs", "emulator", "--port", "0"]
    emulator = subprocess.Popen(
        [*command, "--batches", "150", "--seed", str(seed), *faults],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert emulator.stdout is not None
        url = emulator.stdout.readline().strip()
        db = tmp_path / "m.db"
        sync_command = [sys.executable, "-m", "omics_batch_runs", "sync", "--all-batches"]
        sync_command += ["--endpoint-url", url, "--db", str(db), "--concurrency", "4"]
        rng = random.Random(seed)
        for _ in range(5):
            process = subprocess.Popen(sync_command, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.3, 1.5))
            process.send_signal(signal.SIGKILL)
            process.wait()
            with sqlite3.connect(db) as c:  # never corrupt, whenever it was killed
                assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        done = subprocess.run(sync_command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        data = Dataset(seed=seed, batches=150)
        expected = [{"batchId": b.id, **r} for b in data.batches for r in data.runs(b)]
        assert by_key(mirrored(db)) == by_key(expected)
    finally:
        emulator.send_signal(signal.SIGINT)
        emulator.wait(10)


def run_cli(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(argv)
    code = done.value.code
    return code if isinstance(code, int) else 1


def test_an_unreachable_endpoint_ends_with_4_as_the_export_does(tmp_path: Path) -> None:
    dead = ["--endpoint-url", "http://127.0.0.1:9", "--max-attempts", "2"]
    for selection in (["1", "2"], ["--all-batches"]):
        assert run_cli(["sync", *selection, *dead, "--db", str(tmp_path / "m.db")]) == 4


@pytest.mark.parametrize(
    ("db", "message"),
    [
        ("{tmp}", "is a directory"),
        ("{tmp}/garbage.db", "is not a mirror database"),
        ("{tmp}/garbage.db/m.db", "does not exist"),
        ("{tmp}/eu.db", "mirrors Region eu-west-1, not us-east-1"),
        ("{tmp}/fifo", "is not a regular file"),  # SQLite would fail on it mid-sync
    ],
)
def test_a_bad_database_is_refused_before_any_request(
    served: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], db: str, message: str
) -> None:
    (tmp_path / "garbage.db").write_text("not a database\n")
    os.mkfifo(tmp_path / "fifo")
    eu = tmp_path / "eu.db"
    run_cli(["sync", served.batch_ids[0], "--db", str(eu), "--region", "eu-west-1",
             "--endpoint-url", served.endpoint_url])  # fmt: skip
    capsys.readouterr()
    served.counters.reset()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    path = db.format(tmp=tmp_path)
    code = run_cli(["sync", "--all-batches", "--db", path, "--endpoint-url", served.endpoint_url])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert served.counters.requests == {}
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_a_second_sync_on_one_database_waits_then_refuses(
    served: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "m.db"
    first = Mirror.open(db)
    try:
        started = time.monotonic()
        argv = ["sync", "--all-batches", "--db", str(db), "--endpoint-url", served.endpoint_url]
        assert run_cli(argv) == 2
        assert time.monotonic() - started >= 1.5  # it waited a little
        assert "is in use by another sync" in capsys.readouterr().err
        assert served.counters.requests == {}
    finally:
        first.close()


def test_the_cli_summary_compares_with_a_full_export(
    served: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["sync", "--all-batches", "--db", str(tmp_path / "m.db")]
    argv += ["--endpoint-url", served.endpoint_url]
    assert run_cli(argv) == 0
    assert run_cli(argv) == 0
    err = capsys.readouterr().err
    assert "requests: 1 (ListBatch 1)" in err and "a full export would send" in err


def test_the_mirror_reads_in_other_tools(tmp_path: Path, served: Emulator) -> None:
    """One file, plain SQL: what the sqlite3 shell, DuckDB and pandas read."""
    db = tmp_path / "m.db"
    run_sync(db, served, options=FetchOptions(concurrency=4))
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        reasons = dict(
            c.execute(
                "SELECT submission_failure_reason, count(*) FROM runs "
                "WHERE submission_status = 'FAILED' GROUP BY 1"
            ).fetchall()
        )
    failed = [r for r in listing(served) if r["submissionStatus"] == "FAILED"]
    assert sum(reasons.values()) == len(failed) > 0


def executions(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as c:
        return dict(c.execute("SELECT run_id, status FROM executions").fetchall())


def test_run_status_mirrors_listruns_and_final_batches_are_not_asked_again(
    tmp_path: Path, served: Emulator
) -> None:
    db = tmp_path / "m.db"
    result = run_sync(db, served, run_status=True)
    client = boto3_client(served.endpoint_url)
    expected = {
        item["id"]: item["status"]
        for batch_id in served.batch_ids
        for page in client.get_paginator("list_runs").paginate(batchId=batch_id)
        for item in page["items"]
    }
    assert executions(db) == expected and result.executions_changed == len(expected)
    submitted = {r["runId"] for r in mirrored(db) if "runId" in r}
    assert set(expected) == submitted  # every submitted run, joined by runId
    run_sync(db, served, run_status=True)
    assert "ListRuns" not in served.counters.requests  # every run had ended


def test_runs_listruns_no_longer_returns_keep_their_last_status(tmp_path: Path) -> None:
    data = Dataset(seed=24, sizes=[300], submitting=1, submit_rate=1000.0)
    with run_emulator_in_thread(data) as emulator:
        db = tmp_path / "m.db"
        time.sleep(0.5)
        run_sync(db, emulator, run_status=True)  # runs still starting and running
        seen = executions(db)
        assert seen and set(seen.values()) & {"PENDING", "STARTING", "RUNNING"}
        emulator.forget_runs(emulator.batch_ids[0])
        run_sync(db, emulator, run_status=True)
        assert emulator.counters.requests["ListRuns"] == 1  # asked, and answered nothing
        assert executions(db) == seen


def _some_runs_in(db: Path) -> bool:
    try:
        return db.exists() and bool(mirrored(db))
    except sqlite3.OperationalError:  # the file is there, its tables not yet
        return False


def test_sigterm_exits_130_and_the_same_command_goes_on(tmp_path: Path) -> None:
    slow = Behaviour(latency_ms=30)
    with run_emulator_in_thread(Dataset(seed=25, runs_per_batch=1000, batches=20), slow) as emu:
        db = tmp_path / "m.db"
        command = [sys.executable, "-m", "omics_batch_runs", "sync", "--all-batches"]
        command += ["--endpoint-url", emu.endpoint_url, "--db", str(db), "--concurrency", "2"]
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not _some_runs_in(db):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 130, err
        part = len(mirrored(db))
        assert 0 < part < 20_000
        emu.counters.reset()
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert emu.counters.requests["ListRunsInBatch"] < 200  # it went on, not over
        slow.latency_ms = 0
        assert by_key(mirrored(db)) == by_key(listing(emu))


def test_a_batch_gone_upstream_stays_quietly_in_a_sync_of_explicit_ids(
    tmp_path: Path, served: Emulator
) -> None:
    db, now = tmp_path / "m.db", time.time()
    gone = next(b.id for b in served.dataset.batches if b.status(now) == "PROCESSED")
    ids = Selection([gone, served.batch_ids[0]])
    run_sync(db, served, ids)
    served.delete_batch(gone)
    for _ in range(2):  # the night it goes, and every night after
        result = run_sync(db, served, ids)
        assert result.failed == [] and deleted(db) == {gone}


@pytest.mark.parametrize(
    ("selection", "options", "message"),
    [
        (Selection(["abc"]), None, "invalid batch id 'abc'"),
        (Selection(["1"], discover={}), None, "not both"),
        (ALL, FetchOptions(submission_status="FAILED"), "no run filter"),
    ],
)
def test_the_library_refuses_bad_input_before_any_request(
    tmp_path: Path,
    served: Emulator,
    selection: Selection,
    options: FetchOptions | None,
    message: str,
) -> None:
    with pytest.raises(InvalidInput, match=message):
        run_sync(tmp_path / "m.db", served, selection, options=options)
    assert served.counters.requests == {} and not (tmp_path / "m.db").exists()


def test_ids_may_be_ints_as_for_iter_runs(tmp_path: Path, served: Emulator) -> None:
    result = run_sync(tmp_path / "m.db", served, Selection([int(served.batch_ids[1])]))
    assert result.listed == 1 and not result.failed
