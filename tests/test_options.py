import pytest

from omics_batch_runs import FetchOptions, InvalidInput
from omics_batch_runs.options import check_batch_id


@pytest.mark.parametrize("good", ["1", "123456789012345678", 42])
def test_good_batch_ids(good: object) -> None:
    assert check_batch_id(good) == str(good)


@pytest.mark.parametrize("bad", ["", "abc", "1" * 19, "12a", "١٢٣", " 12", True, None, 1.5])
def test_bad_batch_ids(bad: object) -> None:
    with pytest.raises(InvalidInput, match="invalid batch id"):
        check_batch_id(bad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"page_size": 0}, "page size"),
        ({"page_size": 101}, "page size"),
        ({"run_id": "1", "run_setting_id": "x"}, "at most one filter"),
        ({"submission_status": "DONE"}, "unknown submission status"),
        ({"run_id": ""}, "must not be empty"),
        ({"max_rps": 0}, "max rps"),
        ({"max_rps": 1e-300}, "max rps must be a number from 0.001 to 100000"),
        ({"max_rps": 1e6}, "max rps"),
        ({"fail_fast": "false"}, "fail fast must be True or False"),
        ({"max_attempts": 0}, "max attempts"),
    ],
)
def test_bad_options(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        FetchOptions(**kwargs)  # type: ignore[arg-type]


def test_request_parameters() -> None:
    options = FetchOptions(page_size=40, submission_status="FAILED")
    assert options.request("7", None) == {
        "batchId": "7",
        "maxItems": 40,
        "submissionStatus": "FAILED",
    }
    assert options.request("7", "tok")["startingToken"] == "tok"


@pytest.mark.parametrize(
    "bad",
    [
        {"max_attempts": True},
        {"max_attempts": 2.0},
        {"max_rps": True},
        {"max_rps": float("inf")},
        {"max_rps": float("nan")},
        {"backoff": float("inf")},
    ],
)
def test_numbers_of_the_wrong_kind_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        FetchOptions(**bad)  # type: ignore[arg-type]
