from omics_batch_runs.emulator import Dataset
from omics_batch_runs.service import FAILURE_REASONS, SUBMISSION_STATUSES


def test_same_seed_same_data_and_other_seed_other_data() -> None:
    a, b, c = Dataset(seed=5, batches=4), Dataset(seed=5, batches=4), Dataset(seed=6, batches=4)
    assert [x.id for x in a.batches] == [x.id for x in b.batches]
    assert list(a.runs(a.batches[1])) == list(b.runs(b.batches[1]))
    assert [x.id for x in a.batches] != [x.id for x in c.batches]


def test_varied_sizes_include_empty_and_thousands() -> None:
    sizes = [b.total_runs for b in Dataset(seed=0, batches=200).batches]
    assert 0 in sizes
    assert max(sizes) >= 2_500
    assert len(set(sizes)) > 50


def test_a_batch_of_100000_runs_is_not_built_in_memory() -> None:
    data = Dataset(sizes=[100_000])
    batch = data.batches[0]
    last = data.run(batch, 99_999)
    assert last["runSettingId"] == "sample-100000"
    assert data.index_of_run_setting_id(batch, "sample-100000") == 99_999


def test_records_are_realistic() -> None:
    data = Dataset(seed=2, sizes=[3_000])
    runs = list(data.runs(data.batches[0]))
    statuses = {r["submissionStatus"] for r in runs}
    assert statuses == set(SUBMISSION_STATUSES)
    failed = [r for r in runs if r["submissionStatus"] == "FAILED"]
    assert failed and all("runId" not in r and "runArn" not in r for r in failed)
    assert {r["submissionFailureReason"] for r in failed} == set(FAILURE_REASONS)
    messages = "".join(r["submissionFailureMessage"] for r in failed)
    assert "\n" in messages and '"' in messages and not messages.isascii()
    ok = [r for r in runs if r["submissionStatus"] == "SUCCESS"]
    assert all(r["runArn"].endswith("/" + r["runId"]) for r in ok)
    assert all("submissionFailureReason" not in r for r in ok)
    assert len({r["runId"] for r in ok}) == len(ok)


def test_run_id_lookup_inverts_the_id() -> None:
    data = Dataset(seed=3, sizes=[500, 500])
    first, second = data.batches
    run = next(r for r in data.runs(second) if "runId" in r)
    index = int(run["runSettingId"].split("-")[1]) - 1
    assert data.index_of_run_id(second, run["runId"]) == index
    assert data.index_of_run_id(first, run["runId"]) is None
    assert data.index_of_run_id(second, "12") is None


def test_submitting_batches_grow_over_time() -> None:
    data = Dataset(sizes=[1_000], submitting=1, submit_rate=100.0)
    batch = data.batches[0]
    assert batch.visible_runs(batch.created_at + 2) == 200
    assert batch.status(batch.created_at + 2) == "SUBMITTING"
    assert batch.visible_runs(batch.created_at + 60) == 1_000
    assert batch.status(batch.created_at + 60) != "SUBMITTING"
