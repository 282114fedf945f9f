"""Slurm: sbatch in the launch script; squeue, the jobcomp log, scontrol and scancel here.

A batch id is what `sbatch` announced: a plain job id ("12") or an array's master id, whose
tasks are reported as "12_0", "12_1", …

A poll is one `squeue --json --states=all` for all targets plus one read of the job-completion
log (`JobCompType=jobcomp/filetxt`). Slurm 22.05 ignores squeue's filters when printing JSON,
so the answer holds the whole controller and is filtered here by array/job id. squeue knows
jobs until `MinJobAge` seconds after they end; after that only the jobcomp log does, and a job
in neither is not reported at all (a poll never invents a final state).

Output paths: squeue gives the submit-time pattern (`-o out-%A_%a.log`); it is expanded here
(%A %a %j %J %x %u %% and zero-padding). A pattern using node- or step-dependent specifiers
(%N %n %s %t %b) is not guessed: the path is left empty. A job known only from the jobcomp log
(which has no paths) takes a sibling array task's pattern when one is still queued, else the
paths POMS already stored for it, else none.
"""

import json
import logging
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings

from submissions.models import Job, JobState
from submissions.observations import JobObservation

from .base import BatchError, BatchSystem, run_cli

log = logging.getLogger(__name__)

SUBMITTED = re.compile(r"^Submitted batch job (\d+)(?: on cluster \S+)?\s*$", re.MULTILINE)
JOB_ID = re.compile(r"^\d+$")
NO_TASK = "4294967294"  # what Slurm puts for %a in a job that is not an array task

HELD_REASONS = {"JobHeldUser", "JobHeldAdmin"}
STATES = {
    "PENDING": JobState.IDLE,
    "REQUEUED": JobState.IDLE,
    "REQUEUE_FED": JobState.IDLE,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "CONFIGURING": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "SUSPENDED": JobState.HELD,
    "STOPPED": JobState.HELD,
    "REQUEUE_HOLD": JobState.HELD,
    "SPECIAL_EXIT": JobState.HELD,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "TIMEOUT": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "DEADLINE": JobState.FAILED,
    "PREEMPTED": JobState.FAILED,
    "CANCELLED": JobState.REMOVED,
    "REVOKED": JobState.REMOVED,
}
FINAL = {JobState.COMPLETED, JobState.FAILED, JobState.REMOVED}
# Only these carry an exit code. Not removed jobs: for one cancelled while running, squeue says
# 143 (SIGTERM) where the jobcomp log says 0, and a poll must not flip between the two.
WITH_EXIT_CODE = {JobState.COMPLETED, JobState.FAILED}
# Per-job complaints from scontrol that still leave the rest of the list acted on.
BENIGN_CONTROL = re.compile(r"Job has already finished|No error|Job is no longer pending execution")


# --- small parsers (module functions so tests can feed them captured output) ------------------


def parse_state(name, reason=""):
    """(JobState, hold reason) for a Slurm state name, or (None, "") if it is not one we know."""
    name = (name or "").split()[0].upper() if (name or "").strip() else ""
    state = STATES.get(name)
    if state == JobState.IDLE and reason in HELD_REASONS:
        return JobState.HELD, reason
    if state == JobState.HELD:
        return state, reason if reason and reason != "None" else name.lower()
    return state, ""


def exit_code_from_status(status):
    """A wait(2) status as squeue reports it → the exit code, or 128+signal if killed."""
    status = int(status)
    if status & 0x7F:
        return 128 + (status & 0x7F)
    return (status >> 8) & 0xFF


def exit_code_from_pair(text):
    """jobcomp's "code:signal" (e.g. "3:0", "0:9") → the exit code, or 128+signal if killed."""
    try:
        code, _, signal = text.partition(":")
        code, signal = int(code), int(signal or 0)
    except ValueError:
        return None
    return 128 + signal if signal else code


def expand_tasks(spec):
    """An array task string ("0-3", "1,5-9:2", "2-3%2") → task numbers."""
    spec = spec.split("%", 1)[0]
    tasks = []
    for part in filter(None, spec.split(",")):
        bounds, _, step = part.partition(":")
        first, _, last = bounds.partition("-")
        tasks.extend(range(int(first), int(last or first) + 1, int(step or 1)))
    return tasks


_SPECIFIER = re.compile(r"%(\d*)([A-Za-z%])")


def expand_output_path(pattern, *, job_id, array_job_id, task_id, name, user, workdir):
    """The file Slurm writes for an output pattern ("" if it depends on something we cannot know)."""
    if not pattern:
        pattern = "slurm-%A_%a.out" if task_id is not None else "slurm-%j.out"
    if "\\" in pattern:
        path = pattern.replace("\\", "")  # a backslash turns expansion off
    else:
        values = {
            "A": str(array_job_id if task_id is not None else job_id),  # a plain job is its own "array"
            "a": str(task_id) if task_id is not None else NO_TASK,
            **({"j": str(job_id), "J": str(job_id)} if job_id is not None else {}),
            "x": name,
            "u": user,
        }
        unknown = False

        def substitute(match):
            nonlocal unknown
            width, letter = match.groups()
            if letter == "%":
                return "%"
            if letter not in values:
                unknown = True
                return ""
            value = values[letter]
            return value.zfill(int(width)) if width and value.isdigit() else value

        path = _SPECIFIER.sub(substitute, pattern)
        if unknown:
            return ""
    if not path.startswith("/") and workdir:
        path = str(Path(workdir) / path)
    return path


def _number(value):
    """Slurm JSON numbers: a plain int, or {"set": …, "infinite": …, "number": …} in newer versions."""
    if isinstance(value, dict):
        if not value.get("set", True) or value.get("infinite"):
            return None
        value = value.get("number")
    return value


def _epoch(value):
    value = _number(value)
    return datetime.fromtimestamp(value, tz=UTC) if value else None


def _json_exit_code(value):
    if isinstance(value, dict):  # Slurm ≥ 23.02: {"status": [...], "return_code": …, "signal": {...}}
        signal = _number((value.get("signal") or {}).get("id"))
        if signal:
            return 128 + signal
        return _number(value.get("return_code"))
    value = _number(value)
    return None if value is None else exit_code_from_status(value)


def parse_squeue_json(text):
    """`squeue --json` output → list of job records (dicts). Raises BatchError if unreadable."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BatchError(f"squeue --json gave output that is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        raise BatchError("squeue --json gave JSON without a 'jobs' list")
    errors = [e for e in data.get("errors") or () if e]
    if errors:
        raise BatchError(f"squeue --json reported errors: {errors}")
    for job in data["jobs"]:
        if not isinstance(job, dict) or "job_id" not in job or "job_state" not in job:
            raise BatchError(f"squeue --json gave a job record without job_id/job_state: {str(job)[:200]}")
    return data["jobs"]


JOBCOMP_HEAD = re.compile(r"^JobId=(\d+) ")
JOBCOMP_ARRAY = re.compile(r" ArrayJobId=(\d+)(?=\s)")
JOBCOMP_TASK = re.compile(r" ArrayTaskId=(\d+)(?=\s)")
_JOBCOMP_KEY = re.compile(r"(?:^|\s)([A-Za-z]+)=")


def parse_jobcomp_line(line):
    """One jobcomp/filetxt line ("JobId=4 UserId=root(0) … ExitCode=3:0") → {key: value}."""
    fields = {}
    matches = list(_JOBCOMP_KEY.finditer(line))
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        end = following.start() if following else len(line)
        fields[match.group(1)] = line[match.end() : end].strip()
    return fields


def _local_time(text, zone):
    if not text or text.lower() in ("unknown", "none", "n/a"):
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=zone).astimezone(UTC)
    except ValueError:
        return None


def controller_zone():
    """The zone slurmctld writes jobcomp times in: setting POMS_SLURM_TIME_ZONE, else this host's."""
    name = getattr(settings, "POMS_SLURM_TIME_ZONE", "")
    if not name:
        # Not time.localtime(): Django sets TZ to its TIME_ZONE, which need not be the host's.
        try:
            name = str(Path("/etc/localtime").resolve()).split("/zoneinfo/", 1)[1]
        except (OSError, IndexError):
            try:
                name = Path("/etc/timezone").read_text().strip()
            except OSError:
                name = "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _wall(started, ended):
    return (ended - started).total_seconds() if started and ended else None


class SlurmBatch(BatchSystem):
    name = "slurm"

    @property
    def timeout(self):
        return getattr(settings, "POMS_SLURM_TIMEOUT", 30)

    @property
    def jobcomp_log(self):
        default = Path(settings.VAR_DIR) / "slurm" / "jobcomp.log"
        return Path(getattr(settings, "POMS_SLURM_JOBCOMP_LOG", None) or default)

    def parse_batch_id(self, launch_output):
        found = SUBMITTED.findall(launch_output)
        return found[-1] if found else None

    # --- running commands ----------------------------------------------------------------------

    def _run(self, argv):
        return run_cli(argv, self.timeout)

    @staticmethod
    def _valid(target):
        # One submission with a stray batch id (e.g. set through the callback API) must not stop
        # every other submission on Slurm from being polled.
        if JOB_ID.match(str(target.batch_id)):
            return True
        log.warning("submission %s: %r is not a Slurm job id; not polled", target.submission_id, target.batch_id)
        return False

    @staticmethod
    def _ids(targets):
        ids = []
        for target in targets:
            if not JOB_ID.match(str(target.batch_id)):
                raise BatchError(f"{target.batch_id!r} (submission {target.submission_id}) is not a Slurm job id")
            ids.append(str(target.batch_id))
        return ids

    # --- poll ----------------------------------------------------------------------------------

    def poll(self, targets):
        targets = [t for t in targets if self._valid(t)]
        if not targets:
            return []
        ids = [t.batch_id for t in targets]
        # Newer Slurm honours --jobs with --json (and then refuses an id it no longer knows);
        # 22.05 ignores it. Either way the records are matched to targets below.
        result = self._run(["squeue", "--json", "--states=all", f"--jobs={','.join(ids)}"])
        if result.returncode != 0:
            if "Invalid job id specified" in result.stderr:
                records = []
            else:
                raise BatchError(f"squeue exited {result.returncode}: {result.stderr.strip()[:500]}")
        else:
            records = parse_squeue_json(result.stdout)
        by_batch_id = {t.batch_id: t for t in targets}
        seen, patterns, observations = set(), {}, []
        for rec in records:
            for obs, pattern_args in self._observe_queued(rec, by_batch_id):
                if obs.batch_job_id in seen:
                    continue
                seen.add(obs.batch_job_id)
                observations.append(obs)
                patterns.setdefault(obs.batch_job_id.split("_")[0], pattern_args)
        observations.extend(self._finished_from_jobcomp(by_batch_id, seen, patterns))
        return sorted(observations, key=lambda o: [int(p) for p in o.batch_job_id.split("_")])

    def _observe_queued(self, rec, by_batch_id):
        """Observations for one squeue record (several for a pending array's meta record)."""
        job_id = _number(rec["job_id"])
        array_id = _number(rec.get("array_job_id")) or 0
        batch_id = str(array_id or job_id)
        target = by_batch_id.get(batch_id)
        if target is None:
            return []
        job_state = rec["job_state"]
        if isinstance(job_state, list):  # Slurm ≥ 23.02 gives the state and its flags as a list
            job_state = job_state[0] if job_state else ""
        reason = rec.get("state_reason") or ""
        state, hold_reason = parse_state(job_state, reason)
        if state is None:
            log.warning("slurm job %s has a state POMS does not know (%r); not reported", job_id, job_state)
            return []
        if array_id:
            task = _number(rec.get("array_task_id"))
            tasks = [task] if task is not None else expand_tasks(rec.get("array_task_string") or "")
        else:
            tasks = [None]
        host = rec.get("batch_host") or ""
        ran = bool(host) and state != JobState.IDLE
        started = _epoch(rec.get("start_time")) if ran else None
        ended = _epoch(rec.get("end_time")) if ran and state in FINAL else None
        exit_code = _json_exit_code(rec.get("exit_code")) if state in WITH_EXIT_CODE else None
        pattern_args = {
            "out": rec.get("standard_output") or "",
            "err": rec.get("standard_error") or "",
            "name": rec.get("name") or "",
            "user": rec.get("user_name") or "",
            "workdir": rec.get("current_working_directory") or "",
        }
        out = []
        for task in tasks:
            stdout, stderr = self._paths(pattern_args, job_id=job_id, array_job_id=array_id, task_id=task)
            obs = JobObservation(
                submission_id=target.submission_id,
                batch_job_id=f"{array_id}_{task}" if task is not None else str(job_id),
                state=state,
                exit_code=exit_code,
                host=host,
                started=started,
                ended=ended,
                wall_seconds=_wall(started, ended),
                hold_reason=hold_reason,
                stdout_path=stdout,
                stderr_path=stderr,
            )
            out.append((obs, pattern_args))
        return out

    @staticmethod
    def _paths(args, *, job_id, array_job_id, task_id):
        common = {
            "job_id": job_id,
            "array_job_id": array_job_id,
            "task_id": task_id,
            "name": args["name"],
            "user": args["user"],
            "workdir": args["workdir"],
        }
        stdout = expand_output_path(args["out"], **common)
        # Without --error, stderr goes to the stdout file.
        stderr = expand_output_path(args["err"], **common) if args["err"] else stdout
        return stdout, stderr

    def _finished_from_jobcomp(self, by_batch_id, seen, patterns):
        """Jobs of the targets that have left squeue, from the jobcomp log."""
        lines = self._jobcomp_lines(by_batch_id, seen)
        if not lines:
            return []
        stored = self._stored_jobs({by_batch_id[key.split("_")[0]].submission_id for key in lines})
        zone = controller_zone()
        observations = []
        for key, line in lines.items():
            batch_id, _, task = key.partition("_")
            target = by_batch_id[batch_id]
            keys = [key]
            if not task and self._is_array(batch_id, target.submission_id, seen, lines, stored):
                # An array's tasks still pending when it ended (e.g. scancel) leave one line, for the
                # array's own id, naming no task: it stands for each such task POMS knows of.
                keys = [
                    bjid
                    for (sid, bjid), (state, _out, _err) in stored.items()
                    if sid == target.submission_id
                    and bjid.startswith(f"{batch_id}_")
                    and bjid not in seen
                    and bjid not in lines
                    and state not in FINAL
                ]
            fields = parse_jobcomp_line(line)
            for job_key in keys:
                obs = self._jobcomp_observation(target, job_key, fields, zone)
                if obs is None:
                    continue
                stdout = stderr = ""
                if batch_id in patterns:
                    job_task = job_key.partition("_")[2]
                    stdout, stderr = self._paths(
                        patterns[batch_id],
                        # A task folded into the array's line has a job id of its own we never learn.
                        job_id=int(fields["JobId"]) if job_key == key and fields.get("JobId") else None,
                        array_job_id=int(batch_id),
                        task_id=int(job_task) if job_task else None,
                    )
                if not stdout:
                    _state, stdout, stderr = stored.get((target.submission_id, job_key), (None, "", ""))
                observations.append(replace(obs, stdout_path=stdout, stderr_path=stderr))
        return observations

    def _jobcomp_lines(self, by_batch_id, seen):
        """{job key: its last jobcomp line} for the targets' jobs not seen in squeue.

        The key is "array_task" for an array task, else the job id (a plain job, or an array's
        record of its never-started tasks). The last line wins: a requeued job appears again.
        """
        path = self.jobcomp_log
        try:
            handle = open(path, encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise BatchError(f"cannot read the Slurm jobcomp log {path}: {exc}") from exc
        lines = {}
        with handle:
            for line in handle:
                head = JOBCOMP_HEAD.match(line)
                if not head:
                    continue
                array, task = JOBCOMP_ARRAY.search(line), JOBCOMP_TASK.search(line)
                if array and task:
                    batch_id, key = array.group(1), f"{array.group(1)}_{task.group(1)}"
                else:
                    batch_id = key = head.group(1)
                if batch_id in by_batch_id and key not in seen:
                    lines[key] = line.rstrip("\n")
        return lines

    @staticmethod
    def _stored_jobs(submission_ids):
        return {
            (sid, bjid): (state, out, err)
            for sid, bjid, state, out, err in Job.objects.filter(submission_id__in=submission_ids).values_list(
                "submission_id", "batch_job_id", "state", "stdout_path", "stderr_path"
            )
        }

    @staticmethod
    def _is_array(batch_id, submission_id, seen, lines, stored):
        prefix = f"{batch_id}_"
        return (
            any(k.startswith(prefix) for k in seen)
            or any(k.startswith(prefix) for k in lines)
            or any(sid == submission_id and bjid.startswith(prefix) for sid, bjid in stored)
        )

    @staticmethod
    def _jobcomp_observation(target, key, fields, zone):
        state, hold_reason = parse_state(fields.get("JobState", ""))
        if state is None:
            log.warning("slurm job %s: jobcomp state %r unknown; not reported", key, fields.get("JobState"))
            return None
        host = fields.get("NodeList", "")
        ran = host not in ("", "(null)", "None")
        started = _local_time(fields.get("StartTime"), zone) if ran else None
        ended = _local_time(fields.get("EndTime"), zone) if state in FINAL else None
        exit_code = exit_code_from_pair(fields.get("ExitCode", "")) if state in WITH_EXIT_CODE else None
        return JobObservation(
            submission_id=target.submission_id,
            batch_job_id=key,
            state=state,
            exit_code=exit_code,
            host=host if ran else "",
            started=started,
            ended=ended,
            wall_seconds=_wall(started, ended),
            hold_reason=hold_reason,
        )

    # --- control -------------------------------------------------------------------------------

    def _control(self, argv, targets, *, tolerate_finished):
        ids = self._ids(targets)
        if not ids:
            return
        result = self._run([*argv, ",".join(ids)] if argv[0] == "scontrol" else [*argv, *ids])
        if result.returncode == 0:
            return
        complaints = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        # scontrol exits 1 when any listed job has already finished, though it acted on the rest.
        if tolerate_finished and complaints and all(BENIGN_CONTROL.search(c) for c in complaints):
            return
        raise BatchError(f"{' '.join(argv)} exited {result.returncode}: {' '.join(complaints)[:500]}")

    def hold(self, targets):
        self._control(["scontrol", "hold"], targets, tolerate_finished=True)

    def release(self, targets):
        self._control(["scontrol", "release"], targets, tolerate_finished=True)

    def remove(self, targets):
        self._control(["scancel"], targets, tolerate_finished=False)
