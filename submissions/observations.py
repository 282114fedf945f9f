"""What a batch-system poll reports about one job, whatever the batch system."""

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class JobObservation:
    submission_id: int
    batch_job_id: str
    state: str  # a JobState value
    exit_code: int | None = None
    host: str = ""
    started: datetime | None = None
    ended: datetime | None = None
    cpu_seconds: float | None = None
    wall_seconds: float | None = None
    memory_mb: float | None = None
    hold_reason: str = ""
    stdout_path: str = ""
    stderr_path: str = ""
