import sqlite3
from pathlib import Path

import pytest

from omics_batch_runs.mirror import Mirror, MirrorError

RUNS = [
    {"runSettingId": f"s-{i}", "submissionStatus": "SUCCESS", "runId": str(i)} for i in range(3)
]


def opened(tmp_path: Path) -> Mirror:
    mirror = Mirror.open(tmp_path / "m.db")
    mirror.saw_batches([{"id": "7", "status": "PROCESSED", "totalRuns": 6}])
    return mirror


def state(tmp_path: Path) -> tuple[object, ...]:
    with sqlite3.connect(tmp_path / "m.db") as c:
        runs = c.execute("SELECT count(*) FROM runs").fetchone()[0]
        row = c.execute("SELECT next_token, last_listed FROM batches WHERE id = '7'").fetchone()
    return (runs, *row)


def test_a_page_and_its_token_are_one_transaction(tmp_path: Path) -> None:
    mirror = opened(tmp_path)
    mirror.write_page("7", RUNS, None, "t1", "PROCESSED", 6)
    assert state(tmp_path) == (3, "t1", None)
    broken = [*RUNS[:1], {"runSettingId": None}]  # the second row cannot be written
    with pytest.raises(sqlite3.IntegrityError):
        mirror.write_page("7", [{**r, "runSettingId": "x"} for r in RUNS[:1]] + broken, "t1", None,
                          "PROCESSED", 6)  # fmt: skip
    assert state(tmp_path) == (3, "t1", None)  # neither its rows nor its end
    mirror.close()


def test_the_last_page_ends_the_listing_and_upserts_count_changes(tmp_path: Path) -> None:
    mirror = opened(tmp_path)
    counts = mirror.write_page("7", RUNS, None, None, "PROCESSED", 6)
    assert (counts.added, counts.changed) == (3, 0)
    moved = [{**RUNS[0], "submissionStatus": "DELETE_SUCCESS"}, *RUNS[1:]]
    counts = mirror.write_page("7", moved, None, None, "RUNS_DELETED", 6)
    assert (counts.added, counts.changed) == (0, 1)
    runs, token, listed = state(tmp_path)
    assert (runs, token) == (3, None) and listed is not None
    assert mirror.batches()["7"].listed_status == "RUNS_DELETED"
    mirror.close()


def test_an_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    Mirror.open(tmp_path / "m.db").close()
    with sqlite3.connect(tmp_path / "m.db") as c:
        c.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(MirrorError, match="schema version 99"):
        Mirror.open(tmp_path / "m.db")


def test_another_programs_database_is_refused_untouched(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "other.db") as c:
        c.execute("CREATE TABLE t (x)")
    before = (tmp_path / "other.db").read_bytes()
    with pytest.raises(MirrorError, match="not a mirror database"):
        Mirror.open(tmp_path / "other.db")
    assert (tmp_path / "other.db").read_bytes() == before


def test_one_sync_at_a_time(tmp_path: Path) -> None:
    held = Mirror.open(tmp_path / "m.db")
    try:
        with pytest.raises(MirrorError, match="in use by another sync"):
            Mirror.open(tmp_path / "m.db")
    finally:
        held.close()
    assert (tmp_path / "m.db").exists()
