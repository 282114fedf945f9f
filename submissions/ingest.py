"""The bulk SQL behind record_observations (engineering.md §3.4, tier 2): observations are
compared by fingerprint, changed job rows go through COPY into a temporary table and one
UPDATE / one INSERT, and job events are COPYed straight in. PostgreSQL only, as POMS is."""

import hashlib
import io
import pickle
from datetime import datetime
from operator import attrgetter

from django.db import connection

from .models import Job, JobEvent

# What an observation says about a job, in a fixed order: its fingerprint covers all of it.
JOB_COLUMNS = (
    "state", "exit_code", "host", "started", "ended", "cpu_seconds", "wall_seconds", "memory_mb",
    "hold_reason", "stdout_path", "stderr_path",
)  # fmt: skip
INCOMING = "poms_incoming_jobs"


# A tuple of everything an observation says, built in C. Hashed through repr/pickle bytes, which
# are the same in every process (hash() is not: string hashing is salted per process).
values_of = attrgetter("batch_job_id", *JOB_COLUMNS)


def fingerprint(obs):
    """64-bit fingerprint of one observation; equal fingerprints mean nothing about the job changed.

    repr of the tuple: the cheapest stable bytes for a single row (measured against pickle)."""
    data = repr(values_of(obs)).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big", signed=True)


def digest(observations):
    """Fingerprint of a submission's whole observation (order as reported: a reordering only
    costs one full comparison, never a missed change). One pickle per submission: the cheapest
    stable bytes for a list of rows."""
    data = pickle.dumps([values_of(obs) for obs in observations], protocol=5)
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def load_jobs(submission_ids):
    """{submission id: {batch job id: (job id, state, fingerprint)}} for these submissions."""
    jobs = {}
    rows = Job.objects.filter(submission_id__in=submission_ids).values_list(
        "id", "submission_id", "batch_job_id", "state", "fingerprint"
    )
    for job_id, sid, batch_job_id, state, fp in rows:
        jobs.setdefault(sid, {})[batch_job_id] = (job_id, state, fp)
    return jobs


# COPY's text format escapes, applied in one C call per string.
COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_field(value):
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(COPY_ESCAPES)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _copy_text(rows):
    """COPY's text format: tab-separated, \\N for NULL, backslash escapes."""
    out = io.StringIO()
    out.writelines("\t".join(map(_copy_field, row)) + "\n" for row in rows)
    out.seek(0)
    return out


def write_jobs(changed):
    """Write changed and new jobs. `changed` holds (job id or None, submission id, observation,
    fingerprint, state_changed or None to keep the stored one). Returns {(sid, batch job id): id}."""
    job = Job._meta.db_table
    columns = ("id", "submission_id", "batch_job_id", *JOB_COLUMNS, "fingerprint", "state_changed")
    rows = [
        (job_id, sid, obs.batch_job_id, *(getattr(obs, c) for c in JOB_COLUMNS), fp, moved)
        for job_id, sid, obs, fp, moved in changed
    ]
    ids = {(sid, obs.batch_job_id): job_id for job_id, sid, obs, _fp, _m in changed if job_id is not None}
    names = ", ".join(columns)
    with connection.cursor() as cursor:
        # Created once per transaction (several chunks may share one) and emptied before use.
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {INCOMING} ON COMMIT DROP AS SELECT {names} FROM {job} WITH NO DATA"
        )
        cursor.execute(f"TRUNCATE {INCOMING}")
        cursor.cursor.copy_expert(f"COPY {INCOMING} ({names}) FROM STDIN", _copy_text(rows))
        sets = ", ".join(f"{c} = i.{c}" for c in (*JOB_COLUMNS, "fingerprint"))
        # Rows in id order, so two writers would lock them in the same order.
        cursor.execute(
            f"UPDATE {job} j SET {sets}, state_changed = COALESCE(i.state_changed, j.state_changed) "
            f"FROM (SELECT * FROM {INCOMING} WHERE id IS NOT NULL ORDER BY id) i WHERE j.id = i.id"
        )
        inserted = ", ".join(columns[1:])
        cursor.execute(
            f"INSERT INTO {job} ({inserted}) SELECT {inserted} FROM {INCOMING} WHERE id IS NULL "
            "ORDER BY submission_id, batch_job_id RETURNING id, submission_id, batch_job_id"
        )
        for job_id, sid, batch_job_id in cursor.fetchall():
            ids[(sid, batch_job_id)] = job_id
    return ids


def write_events(events):
    """COPY job events: (job id, state, created, exit code)."""
    if not events:
        return
    with connection.cursor() as cursor:
        cursor.cursor.copy_expert(
            f"COPY {JobEvent._meta.db_table} (job_id, state, created, exit_code) FROM STDIN", _copy_text(events)
        )
