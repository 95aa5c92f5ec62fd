"""Facts about the HealthOmics run-batch API that the fetcher and the emulator share."""

from __future__ import annotations

SUBMISSION_STATUSES = (
    "SUCCESS",
    "FAILED",
    "CANCEL_SUCCESS",
    "CANCEL_FAILED",
    "DELETE_SUCCESS",
    "DELETE_FAILED",
)
BATCH_STATUSES = (
    "CREATING",
    "PENDING",
    "SUBMITTING",
    "INPROGRESS",
    "STOPPING",
    "CANCELLED",
    "FAILED",
    "PROCESSED",
    "RUNS_DELETING",
    "RUNS_DELETE_FAILED",
    "RUNS_DELETED",
)
FAILURE_REASONS = (
    "ValidationException",
    "AccessDeniedException",
    "ResourceNotFoundException",
    "ServiceQuotaExceededException",
    "ConflictException",
    "ThrottlingException",
    "RequestTimeoutException",
    "InternalServerException",
)
MAX_PAGE_SIZE = 100
MAX_RUNS_PER_BATCH = 100_000
SERVICE_NAME = "omics"
API_VERSION = "2022-11-28"
