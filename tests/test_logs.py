import logging

import orjson
from rich.console import Console

from omics_batch_runs.logs import redact, setup_logging


def test_secrets_are_redacted() -> None:
    text = (
        "key AKIAIOSFODNN7EXAMPLE Signature=abc123 startingToken=eyJwb3M "
        "'nextToken': 'tok' X-Amz-Security-Token: FQoG aws_secret_access_key=wJalr"
    )
    out = redact(text)
    for secret in ("AKIAIOSFODNN7EXAMPLE", "abc123", "eyJwb3M", "'tok'", "FQoG", "wJalr"):
        assert secret not in out
    assert out.count("[redacted]") == 6


def test_json_logs_are_one_object_a_line_and_scrubbed(capsys: object) -> None:
    import io

    buffer = io.StringIO()
    setup_logging("info", "json", Console(file=buffer))
    logging.getLogger("omics_batch_runs.test").info("token startingToken=SECRET here")
    entry = orjson.loads(buffer.getvalue().strip())
    assert entry["level"] == "INFO"
    assert "SECRET" not in entry["message"]
