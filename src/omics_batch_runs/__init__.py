"""Fetch the runs of many AWS HealthOmics run batches concurrently, as one async stream."""

import logging
from importlib.metadata import version as _version

from .client import add_missing_operations
from .options import FetchOptions, InvalidInput
from .paging import BatchError, BatchesFailed, Page, iter_pages, iter_runs
from .rate import AdaptiveRate
from .stats import FetchStats

__version__ = _version("omics-batch-runs")
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AdaptiveRate",
    "BatchError",
    "BatchesFailed",
    "FetchOptions",
    "FetchStats",
    "InvalidInput",
    "Page",
    "__version__",
    "add_missing_operations",
    "iter_pages",
    "iter_runs",
]
