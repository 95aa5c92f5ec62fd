from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from omics_batch_runs.dispatch import error_code, transient_kind


def client_error(code: str, status: int) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "ListRunsInBatch")  # type: ignore[arg-type]


def test_what_is_retried() -> None:
    assert transient_kind(client_error("ThrottlingException", 429)) == "throttle"
    assert transient_kind(client_error("RequestTimeoutException", 408)) == "timeout"
    assert transient_kind(client_error("InternalServerException", 500)) == "server_error"
    assert transient_kind(client_error("BadGateway", 502)) == "server_error"
    assert transient_kind(ConnectionClosedError(endpoint_url="x")) == "connection"
    assert transient_kind(EndpointConnectionError(endpoint_url="x")) == "connection"


def test_what_is_not_retried() -> None:
    for code, status in [
        ("ValidationException", 400),
        ("AccessDeniedException", 403),
        ("ResourceNotFoundException", 404),
        ("ConflictException", 409),
    ]:
        assert transient_kind(client_error(code, status)) is None
    assert transient_kind(ValueError("bug")) is None
    assert error_code(client_error("ValidationException", 400)) == "ValidationException"
    assert error_code(ValueError()) == "ValueError"
