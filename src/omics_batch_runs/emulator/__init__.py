"""A local HealthOmics run-batch service: ListRunsInBatch, ListBatch and GetBatch.

AWS's own clients (botocore, boto3, the AWS CLI) cannot tell it from the service on these
operations, so code can be tested against it with no account and no cost.
"""

from .app import Counters
from .behaviour import Behaviour, Fault
from .dataset import Batch, Dataset
from .demo import demo_service
from .server import Emulator, run_emulator, run_emulator_in_thread, serve_forever

__all__ = [
    "Batch",
    "Behaviour",
    "Counters",
    "Dataset",
    "Emulator",
    "Fault",
    "demo_service",
    "run_emulator",
    "run_emulator_in_thread",
    "serve_forever",
]
