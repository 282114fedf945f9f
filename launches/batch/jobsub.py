"""jobsub_lite, Fermilab's front end to HTCondor, driven through its command-line tools.

What this adapter relies on (reference/poms.md §3 items 12–13 and §13; fermitools/jobsub_lite):
- `jobsub_submit` prints `Use job id <cluster>.0@<schedd> to retrieve output` (lib/condor.py); POMS
  stores `<cluster>@<schedd>`.
- `jobsub_q` / `jobsub_history` run condor_q / condor_history once per schedd and relay each one's
  output (lib/mains/cmd.py), so `-json` yields one JSON array per schedd that has matching jobs,
  concatenated, and nothing at all when no job matches. A schedd that cannot be reached shows only
  as condor's `-- Failed to fetch ads from: …` on stderr; jobsub still exits 0.
- `jobsub_rm/hold/release` relay condor's text and exit 0 even when condor found nothing to act on;
  only jobsub's own failures (credentials, collector, no group) exit non-zero.
- A completed or removed job leaves the queue at once; only condor_history still knows it.

Configuration, each overridable by the constructor (`JobsubBatch(group=…, role=…, timeout=…)`):
- `POMS_JOBSUB_GROUP` — a site-wide `-G` group. Left unset (the usual case), each submission's
  experiment is its group, as in POMS, and a poll makes one query per group.
- `POMS_JOBSUB_ROLE` — `--role` (e.g. `Production`); unset: jobsub's default.
- `POMS_JOBSUB_TIMEOUT` — seconds allowed to each jobsub command (default 120).
The commands inherit the worker's environment: jobsub needs its credentials (`BEARER_TOKEN_FILE`,
`X509_USER_PROXY`, `JOBSUB_FETCHLOG_URL`, condor configuration) from there.
"""

import json
import logging
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

from submissions.models import JobState
from submissions.observations import JobObservation

from .base import BatchError, BatchSystem, Target, read_output_under, run_cli

log = logging.getLogger(__name__)

JOB_ID_LINE = re.compile(r"Use job id (\d+)(?:\.\d+)?@([\w.\-]+) to retrieve output")
BATCH_ID = re.compile(r"^(\d+)(?:\.(\d+))?@([\w.\-]+)$")
UNREACHED_SCHEDD = re.compile(r"^-- Failed to fetch ads from:.*$", re.MULTILINE)

# HTCondor JobStatus → POMS job state; 4 (Completed) depends on the exit code.
STATES = {
    0: JobState.IDLE,  # Unexpanded (very old schedds)
    1: JobState.IDLE,
    2: JobState.RUNNING,
    3: JobState.REMOVED,
    5: JobState.HELD,
    6: JobState.RUNNING,  # Transferring output: still on the worker
    7: JobState.HELD,  # Suspended: not progressing, as a hold
}

# Only what the observations need: a full ClassAd is ~5 kB and a group can have 30 000 jobs queued.
ATTRIBUTES = (
    "ClusterId",
    "ProcId",
    "GlobalJobId",
    "JobStatus",
    "ExitCode",
    "ExitBySignal",
    "ExitSignal",
    "HoldReason",
    "RemoveReason",
    "RemoteHost",
    "LastRemoteHost",
    "MATCH_EXP_JOB_GLIDEIN_Site",
    "RemoteWallClockTime",
    "RemoteUserCpu",
    "RemoteSysCpu",
    "ResidentSetSize_RAW",
    "QDate",
    "JobStartDate",
    "CompletionDate",
    "EnteredCurrentStatus",
    "DAGManJobId",
    "POMS4_SUBMISSION_ID",
)


def _time(value):
    return datetime.fromtimestamp(value, tz=UTC) if isinstance(value, int | float) and value > 0 else None


def _number(value):
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _positive(value):
    number = _number(value)
    return number if number else None


def _cluster_of(batch_id):
    """(cluster, schedd) of a stored batch id `<cluster>@<schedd>` (or `<cluster>.<proc>@<schedd>`)."""
    m = BATCH_ID.match(batch_id or "")
    return (int(m.group(1)), m.group(3)) if m else None


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _tail(text, limit=500):
    """The end of a command's complaint, which is where jobsub puts the reason."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines)[-limit:] or "(no output)"


def parse_ads(text, what="jobsub"):
    """Job ClassAds from `-json` output: zero or more JSON arrays, one per schedd, back to back."""
    decoder = json.JSONDecoder()
    ads, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return ads
        try:
            chunk, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise BatchError(f"{what} printed something that is not JSON: {exc.msg} at line {exc.lineno}") from None
        if not isinstance(chunk, list) or not all(isinstance(ad, dict) for ad in chunk):
            raise BatchError(f"{what} printed JSON that is not a list of job ClassAds")
        for ad in chunk:
            if not all(isinstance(ad.get(k), int) for k in ("ClusterId", "ProcId", "JobStatus")):
                raise BatchError(f"{what} printed a job without ClusterId/ProcId/JobStatus: {str(ad)[:200]}")
        ads.extend(chunk)


def observe(ad, submission_id, schedd):
    """One job ClassAd as a JobObservation of `submission_id`."""
    status = ad["JobStatus"]
    exit_code = _int(ad.get("ExitCode"))
    note = ""
    if status == 4:
        if ad.get("ExitBySignal") is True:
            state, exit_code = JobState.FAILED, None
            note = f"killed by signal {ad.get('ExitSignal', '?')}"
        else:
            state = JobState.COMPLETED if exit_code == 0 else JobState.FAILED
    elif status in STATES:
        state = STATES[status]
    else:
        raise BatchError(f"job {ad['ClusterId']}.{ad['ProcId']}@{schedd} has unknown JobStatus {status}")
    if status == 5:
        note = str(ad.get("HoldReason") or "held")
    elif status == 7:
        note = "suspended"
    elif status == 3:
        note = str(ad.get("RemoveReason") or "")
    # RemoteHost is `slot1_3@fnpc1234.fnal.gov` while the job runs; LastRemoteHost afterwards.
    host = str(ad.get("RemoteHost") or ad.get("LastRemoteHost") or "").rsplit("@", 1)[-1]
    if host and ad.get("MATCH_EXP_JOB_GLIDEIN_Site"):
        host = f"{host} ({ad['MATCH_EXP_JOB_GLIDEIN_Site']})"
    ended = _time(ad.get("CompletionDate"))
    if ended is None and status in (3, 4):
        ended = _time(ad.get("EnteredCurrentStatus"))
    cpu = [_number(ad.get(k)) for k in ("RemoteUserCpu", "RemoteSysCpu")]
    rss_kib = _positive(ad.get("ResidentSetSize_RAW"))
    return JobObservation(
        submission_id=submission_id,
        batch_job_id=f"{ad['ClusterId']}.{ad['ProcId']}@{schedd}",
        state=state,
        exit_code=exit_code,
        host=host[:200],
        started=_time(ad.get("JobStartDate")),
        ended=ended,
        # Condor updates these when a run stops (and periodically), not on every query: stable
        # between polls, so a running job is not rewritten each cycle.
        cpu_seconds=sum(c for c in cpu if c) or None,
        wall_seconds=_positive(ad.get("RemoteWallClockTime")),
        memory_mb=round(rss_kib / 1024, 1) if rss_kib else None,
        hold_reason=note[:300],
    )


class JobsubBatch(BatchSystem):
    name = "jobsub"

    def __init__(self, group=None, role=None, timeout=None):
        self._group, self._role, self._timeout = group, role, timeout

    # Settings are read at call time: the registry builds its instance when Django starts.
    def group_of(self, target=None):
        """The -G group: the constructor's, else the site setting, else the submission's experiment."""
        return self._group or getattr(settings, "POMS_JOBSUB_GROUP", "") or (target.group if target else "")

    @property
    def role(self):
        return self._role or getattr(settings, "POMS_JOBSUB_ROLE", "") or ""

    @property
    def timeout(self):
        return self._timeout or getattr(settings, "POMS_JOBSUB_TIMEOUT", 120)

    def _common(self, group):
        argv = ["-G", group] if group else []
        return argv + (["--role", self.role] if self.role else [])

    def _run(self, command, *args, group=""):
        result = run_cli([command, *self._common(group), *args], self.timeout)
        if result.returncode != 0:
            raise BatchError(f"{command} failed (exit {result.returncode}): {_tail(result.stderr + result.stdout)}")
        return result

    # -- launch output -------------------------------------------------------------------------

    def parse_batch_id(self, launch_output):
        """`<cluster>@<schedd>` of the last job id announced (POMS's slurp_jobid strips `.0`)."""
        found = JOB_ID_LINE.findall(launch_output or "")
        return f"{found[-1][0]}@{found[-1][1]}" if found else None

    # -- polling -------------------------------------------------------------------------------

    def _constraint(self, targets, group):
        sids = sorted({t.submission_id for t in targets})
        clusters = sorted({c[0] for t in targets if (c := _cluster_of(t.batch_id))})
        # Jobs carry POMS4_SUBMISSION_ID when launched through the POMS jobsub wrapper; others are
        # found by their cluster, or by the DAGMan cluster that submitted them.
        terms = [f"member(POMS4_SUBMISSION_ID, {{{', '.join(map(str, sids))}}})"]
        if clusters:
            listed = ", ".join(map(str, clusters))
            terms += [f"member(ClusterId, {{{listed}}})", f"member(DAGManJobId, {{{listed}}})"]
        expr = " || ".join(terms)
        return f'Jobsub_Group =?= "{group}" && ({expr})' if group else expr

    def _ads(self, command, *args, group=""):
        result = self._run(command, *args, group=group)
        unreached = UNREACHED_SCHEDD.search(result.stderr)
        if unreached:  # a partial answer would look like jobs vanishing
            raise BatchError(f"{command}: a schedd did not answer: {unreached.group(0)[3:].strip()[:300]}")
        return parse_ads(result.stdout, command)

    def poll(self, targets):
        by_group = {}
        for target in targets:
            by_group.setdefault(self.group_of(target), []).append(target)
        observations = []
        for group, members in sorted(by_group.items()):
            observations += self._poll_group(group, members)
        return observations

    def _poll_group(self, group, targets):
        """One jobsub_q and one jobsub_history call for all the targets of one group."""
        constraint = self._constraint(targets, group)
        attributes = ",".join(ATTRIBUTES)
        queued = self._ads(
            "jobsub_q", "-json", "-allusers", "--constraint", constraint, "-attributes", attributes, group=group
        )
        # bin/jobsub_history drops its own --constraint option; condor's `-constraint` passes through.
        left = self._ads("jobsub_history", "-json", "-constraint", constraint, "-attributes", attributes, group=group)
        by_sid = {t.submission_id: t for t in targets}
        by_cluster = {c: t for t in targets if (c := _cluster_of(t.batch_id))}
        seen = {}
        # History last: a job that finished between the two calls is reported by both, and the
        # history has the later truth (a job never returns to the queue).
        for ad in queued + left:
            schedd = str(ad.get("GlobalJobId", "")).split("#")[0]
            if "POMS4_SUBMISSION_ID" in ad:
                target = by_sid.get(_int(ad["POMS4_SUBMISSION_ID"]))
            else:
                target = by_cluster.get((ad["ClusterId"], schedd)) or by_cluster.get(
                    (_int(ad.get("DAGManJobId")), schedd)
                )
            if target is None or not schedd:
                continue  # another POMS's submission, or a job we cannot name
            obs = observe(ad, target.submission_id, schedd)
            seen[(obs.submission_id, ad["ClusterId"], ad["ProcId"], schedd)] = obs
        return [seen[k] for k in sorted(seen)]

    # -- control -------------------------------------------------------------------------------

    def _control(self, command, targets):
        for target in targets:
            group = self.group_of(target)
            self._run(command, "--constraint", f"POMS4_SUBMISSION_ID=={target.submission_id}", group=group)
            # As POMS does: also by job id, for jobs without the POMS ClassAd (a DAG's leader, or a
            # launch that did not go through the POMS wrapper). Finding nothing is not an error.
            cluster = _cluster_of(target.batch_id)
            if cluster:
                self._run(command, "--jobid", f"{cluster[0]}@{cluster[1]}", group=group)

    def hold(self, targets):
        self._control("jobsub_hold", targets)

    def release(self, targets):
        self._control("jobsub_release", targets)

    def remove(self, targets):
        self._control("jobsub_rm", targets)

    # -- logs ----------------------------------------------------------------------------------

    def fetch_log(self, batch_id_or_job_id, dest_dir, group=""):
        """Fetch a job's log sandbox into `dest_dir`; returns the files that arrived.

        A stored batch id `<cluster>@<schedd>` means its first job, `<cluster>.0@<schedd>`.
        """
        m = BATCH_ID.match(batch_id_or_job_id or "")
        if not m:
            raise BatchError(f"not a jobsub job id: {batch_id_or_job_id!r}")
        job_id = f"{m.group(1)}.{m.group(2) or 0}@{m.group(3)}"
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        # Unpacked beside dest first, so what this fetch brought is known exactly even when it
        # replaces files of an earlier fetch (jobsub names the submit files the same for every job).
        with tempfile.TemporaryDirectory(dir=dest, prefix=".fetchlog-") as scratch:
            self._run("jobsub_fetchlog", "--jobid", job_id, "--destdir", scratch, group=group or self.group_of())
            fetched = []
            for path in sorted(Path(scratch).rglob("*")):
                if path.is_file():
                    final = dest / path.relative_to(scratch)
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, final)
                    fetched.append(final)
        return fetched

    def read_output(self, job, stream):
        """jobsub keeps job output on the schedd: fetch the job's sandbox once with
        jobsub_fetchlog into the log root, then read its .out / .err."""
        dest = Path(settings.POMS_LOG_ROOT) / "jobsub" / re.sub(r"[^\w.@-]", "_", job.batch_job_id)
        # Regular files only: a symlink in a fetched sandbox must not lead the page elsewhere on this host.
        files = [p for p in dest.rglob("*") if p.is_file() and not p.is_symlink()] if dest.is_dir() else []
        if not files:
            files = self.fetch_log(
                job.batch_job_id, dest, group=self.group_of(Target(0, "", job.submission.experiment.name))
            )
        suffix = ".out" if stream == "stdout" else ".err"
        chosen = next((p for p in sorted(files) if p.name.endswith(suffix) and not p.is_symlink()), None)
        return read_output_under(chosen, [dest]) if chosen else ""
