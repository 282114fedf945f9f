"""The interface every batch-system adapter implements (DESIGN §7)."""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from poms.lib import proc
from poms.lib.text import tail_file


class BatchError(Exception):
    """The batch system could not be asked or gave an answer we cannot read.

    A poll that raises this changes no status; the error is recorded and retried next cycle.
    """


@dataclass(frozen=True)
class Target:
    """One submission as a poll sees it."""

    submission_id: int
    batch_id: str
    group: str = ""  # the submission's experiment: jobsub's -G group; other batch systems ignore it


class Observations(list):
    """A poll's answer: JobObservations, plus `problems`, {submission id: why it could not be
    read}, for submissions the poll had to leave out while it read the others."""

    def __init__(self, observations=(), problems=None):
        super().__init__(observations)
        self.problems = problems or {}


def read_output_under(path, roots):
    """The tail of the file at `path` if it resolves (symlinks followed) under one of `roots`."""
    if not path:
        return ""
    real = Path(path).resolve()
    if not any(real.is_relative_to(Path(root).resolve()) for root in roots):
        raise BatchError(f"{path} is outside the directories job output is served from (POMS_JOB_OUTPUT_ROOTS)")
    try:
        return tail_file(real)
    except OSError as exc:
        raise BatchError(f"cannot read {path}: {exc.strerror or exc}") from exc


def run_cli(argv, timeout):
    """Run a batch-system command; a missing binary or a hang is a BatchError (never a status)."""
    try:
        result = proc.run(argv, timeout=timeout)
    except OSError as exc:
        raise BatchError(f"cannot run {argv[0]}: {exc}") from exc
    if result.timed_out:
        raise BatchError(f"{argv[0]} did not answer within {timeout} s (killed)")
    return result


class BatchSystem(ABC):
    name = ""

    @abstractmethod
    def parse_batch_id(self, launch_output):
        """The batch id announced by a launch's output, or None."""
        ...

    @abstractmethod
    def poll(self, targets):
        """One batched query for all `targets` → list of JobObservation (or Observations naming
        the submissions left out). Raises BatchError when nothing could be read."""
        ...

    # Control acts on whole submissions (all their jobs). `targets` carry the submission id too,
    # so a backend may address jobs by a POMS attribute (jobsub: --constraint POMS4_SUBMISSION_ID==N).
    # Each raises BatchError when the batch system refuses or cannot be reached.

    @abstractmethod
    def hold(self, targets): ...

    @abstractmethod
    def release(self, targets): ...

    @abstractmethod
    def remove(self, targets): ...

    def read_output(self, job, stream):
        """The tail of a job's stdout/stderr; by default the file the poll reported, if it lies
        under one of POMS_JOB_OUTPUT_ROOTS for the job's experiment."""
        experiment = job.submission.experiment.name
        roots = [Path(str(root).format(experiment=experiment)) for root in settings.POMS_JOB_OUTPUT_ROOTS]
        return read_output_under(job.stdout_path if stream == "stdout" else job.stderr_path, roots)
