"""Batch-system adapters, one module each, looked up by the job type's `batch_system`."""

from .base import BatchError, BatchSystem, Target
from .jobsub import JobsubBatch
from .local import LocalBatch
from .slurm import SlurmBatch

BACKENDS = {"local": LocalBatch(), "slurm": SlurmBatch(), "jobsub": JobsubBatch()}


def get_backend(name):
    try:
        return BACKENDS[name]
    except KeyError:
        raise BatchError(f"unknown batch system {name!r}") from None


__all__ = ["BACKENDS", "BatchError", "BatchSystem", "Target", "get_backend"]
