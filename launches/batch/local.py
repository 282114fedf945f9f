"""The local batch system: detached processes on this host, run by bin/poms_local_submit.

A batch id is the cluster number; each job's record is `<root>/clusters/<id>/<proc>.json`.
"""

import json
import os
import re
import signal
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

from submissions.models import JobState
from submissions.observations import JobObservation

from .base import BatchError, BatchSystem, Observations, read_output_under

SUBMITTED = re.compile(r"^Submitted local cluster (\d+) \(\d+ jobs?\)\.$", re.MULTILINE)


def _time(value):
    return datetime.fromtimestamp(value, tz=UTC) if value else None


def _process_state(pid):
    """The kernel's one-letter state of `pid` (R, S, T, Z, …) or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


class LocalBatch(BatchSystem):
    name = "local"

    @property
    def root(self):
        return Path(settings.POMS_LOCAL_BATCH_ROOT) / "clusters"

    def parse_batch_id(self, launch_output):
        found = SUBMITTED.findall(launch_output)
        return found[-1] if found else None

    def read_output(self, job, stream):
        """Only files of the job's own cluster, whatever path its record names."""
        path = job.stdout_path if stream == "stdout" else job.stderr_path
        return read_output_under(path, [self.root / str(job.submission.batch_id)])

    def _records(self, batch_id):
        cluster = self.root / str(batch_id)
        if not re.fullmatch(r"\d+", str(batch_id)) or not cluster.is_dir():
            raise BatchError(f"local cluster {batch_id} is unknown")
        for path in sorted(cluster.glob("*.json"), key=lambda p: int(p.stem)):
            try:
                yield path, json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise BatchError(f"unreadable job record {path}: {exc}") from exc

    def poll(self, targets):
        observations = Observations()
        for target in targets:
            try:
                records = list(self._records(target.batch_id))
            except BatchError as exc:
                # One submission with a stray batch id (e.g. set through the callback API) or a broken
                # record must not stop every other local submission from being polled.
                observations.problems[target.submission_id] = str(exc)
                continue
            observations.extend(self._observe(target, path, rec) for path, rec in records)
        return observations

    def _observe(self, target, path, rec):
        state = rec.get("state", "idle")
        pid = rec.get("pid")
        hold_reason = ""
        if state in ("idle", "running") and pid:
            kernel = _process_state(pid)
            if (kernel is None or kernel == "Z") and path.with_suffix(".remove").exists():
                # Removed before its supervisor had installed the handler that records it.
                state = "removed"
            elif kernel is None or kernel == "Z":
                # The supervisor died without recording an end (e.g. SIGKILL): the job is lost.
                state, hold_reason = "failed", "job process vanished without an exit record"
            elif kernel == "T":
                state, hold_reason = "held", "held by user (SIGSTOP)"
        started, ended = _time(rec.get("started")), _time(rec.get("ended"))
        wall = (ended - started).total_seconds() if started and ended else None
        return JobObservation(
            submission_id=target.submission_id,
            batch_job_id=f"{target.batch_id}.{path.stem}",
            state=JobState(state),
            exit_code=rec.get("exit_code"),
            host=rec.get("host", ""),
            started=started,
            ended=ended,
            cpu_seconds=rec.get("cpu_seconds"),
            wall_seconds=wall,
            memory_mb=rec.get("memory_mb"),
            hold_reason=hold_reason,
            stdout_path=str(path.with_suffix(".out")),
            stderr_path=str(path.with_suffix(".err")),
        )

    def _signal(self, targets, signals, mark=None):
        for target in targets:
            for path, rec in self._records(target.batch_id):
                if rec.get("state") not in ("idle", "running") or not rec.get("pid"):
                    continue
                if mark:
                    path.with_suffix(mark).touch()
                for sig in signals:
                    try:
                        os.killpg(rec["pid"], sig)
                    except ProcessLookupError:
                        break

    def hold(self, targets):
        self._signal(targets, [signal.SIGSTOP])

    def release(self, targets):
        self._signal(targets, [signal.SIGCONT])

    def remove(self, targets):
        # A held job must be continued to act on SIGTERM.
        self._signal(targets, [signal.SIGTERM, signal.SIGCONT], mark=".remove")
