"""Fetch the runs of many AWS HealthOmics run batches concurrently, as one async stream."""

import logging
from importlib.metadata import version as _version

from .client import add_missing_operations
from .errors import (
    BatchError,
    BatchesFailed,
    InvalidInput,
    OmicsBatchRunsError,
    UnsupportedEventLoop,
)
from .mirror import MirrorError
from .options import FetchOptions, Selection
from .paging import Page, PageStream, RunStream, iter_pages, iter_runs, open_pages, open_runs
from .rate import AdaptiveRate
from .stats import FetchStats
from .sync import SyncResult, sync

__version__ = _version("omics-batch-runs")
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AdaptiveRate",
    "BatchError",
    "BatchesFailed",
    "FetchOptions",
    "FetchStats",
    "InvalidInput",
    "MirrorError",
    "OmicsBatchRunsError",
    "Page",
    "PageStream",
    "RunStream",
    "Selection",
    "SyncResult",
    "UnsupportedEventLoop",
    "__version__",
    "add_missing_operations",
    "iter_pages",
    "iter_runs",
    "open_pages",
    "open_runs",
    "sync",
]
