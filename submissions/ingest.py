"""The bulk SQL and the in-memory bookkeeping behind record_observations (engineering.md §3.4,
tier 2). Observations are compared with the stored job rows as plain value tuples; changed rows
go through COPY into a temporary table, and one statement updates and inserts the jobs and
inserts their events. PostgreSQL only, as POMS is.

The stored rows a poll compares against come from the process's `MIRROR` when it is current,
else from the database. A poll worker keeps a copy of the job rows it last wrote or read, stamped
with the submission's random `poll_version` at the time; every write of the jobs changes that
version, so a stale copy is never used (the same idea as Kubernetes' resourceVersion). See
bench/README.md for the figures.
"""

import csv
import io
import secrets
import threading
from collections import OrderedDict
from operator import attrgetter
from typing import NamedTuple

from django.conf import settings
from django.db import connection

from .models import Job, JobEvent

# What an observation says about a job, in a fixed order; the database returns the same tuple.
JOB_COLUMNS = (
    "state", "exit_code", "host", "started", "ended", "cpu_seconds", "wall_seconds", "memory_mb",
    "hold_reason", "stdout_path", "stderr_path",
)  # fmt: skip
OBSERVED = ("batch_job_id", *JOB_COLUMNS)
INCOMING = "poms_incoming_jobs"

# A tuple of everything an observation says about its job, built in C. Compared with `==`
# against the stored row read as the same tuple: exact, no hashing (JobState is a str, ints
# equal floats, aware datetimes compare by instant).
values_of = attrgetter(*OBSERVED)


# Descriptive text a batch system may make longer than its column: stored cut, not refused (one
# over-long hold reason must not stall every later poll of its submissions).
CLIPPED = {
    OBSERVED.index(c): Job._meta.get_field(c).max_length for c in ("host", "hold_reason", "stdout_path", "stderr_path")
}
FLOATS = [OBSERVED.index(c) for c in ("cpu_seconds", "wall_seconds", "memory_mb")]


def as_stored(values):
    """The value tuple as the job table will hold it: text cut to its column, missing text empty,
    NaN as NULL. Applied only to observations that differ from the stored row, so that a value
    the table cannot hold as given is not seen as a change poll after poll."""
    values = list(values)
    for i, limit in CLIPPED.items():
        values[i] = (values[i] or "")[:limit]
    for i in FLOATS:
        if values[i] != values[i]:  # NaN
            values[i] = None
    return tuple(values)


def new_version():
    """A fresh `poll_version`: random, so it never repeats, not even across database resets."""
    return secrets.randbits(63)


class Mirrored(NamedTuple):
    version: int  # the submission's poll_version when the rows were written or read
    jobs: dict  # {batch job id: value tuple}, every job of the submission as stored
    observed: list  # the value tuples of the last observation compared with them, as reported


class Mirror:
    """This process's copy of the job rows it last wrote or read, per submission ({submission id:
    Mirrored}), current while the submission's poll_version is still the one it was taken at.

    Bounded by `POMS_POLL_MIRROR_JOBS` jobs; the least recently written submissions go first and
    are read from the database next time. Entries are replaced whole, never changed in place, so
    threads sharing it only need the lock to keep the bound."""

    def __init__(self, limit=None):
        self.limit = limit
        self._entries = OrderedDict()
        self._jobs = 0
        self._lock = threading.Lock()

    def get(self, sid, version):
        entry = self._entries.get(sid)
        return entry if entry is not None and entry.version == version else None

    def put(self, sid, version, jobs, observed):
        limit = settings.POMS_POLL_MIRROR_JOBS if self.limit is None else self.limit
        with self._lock:
            self._drop(sid)
            # Version 0 is every submission's before its first poll write: not a version to trust.
            if version == 0 or _size(jobs) > limit:
                return
            self._entries[sid] = Mirrored(version, jobs, observed)
            self._jobs += _size(jobs)
            while self._jobs > limit:
                _sid, evicted = self._entries.popitem(last=False)
                self._jobs -= _size(evicted.jobs)

    def forget(self, sids):
        with self._lock:
            for sid in sids:
                self._drop(sid)

    def _drop(self, sid):
        old = self._entries.pop(sid, None)
        self._jobs -= _size(old.jobs) if old else 0

    def clear(self):
        with self._lock:
            self._entries.clear()
            self._jobs = 0

    def __len__(self):
        return self._jobs


def _size(jobs):
    return max(1, len(jobs))  # a submission without jobs still takes an entry


MIRROR = Mirror()


def load_jobs(submission_ids):
    """{submission id: {batch job id: value tuple}} read from the job table (the tuple as
    `values_of` builds it)."""
    jobs = {sid: {} for sid in submission_ids}
    if not submission_ids:
        return jobs
    with connection.cursor() as cursor:
        # The raw cursor: 100,000 rows through the ORM's row conversion cost more than the query.
        cursor.cursor.execute(
            f"SELECT submission_id, {', '.join(OBSERVED)} FROM {Job._meta.db_table} WHERE submission_id = ANY(%s)",
            (list(submission_ids),),
        )
        for row in cursor.cursor.fetchall():
            jobs[row[0]][row[1]] = row[1:]
    return jobs


# Job columns holding text, never NULL: in COPY's CSV format an empty field is NULL unless quoted.
TEXT_COLUMNS = ("batch_job_id", "state", "host", "hold_reason", "stdout_path", "stderr_path")


def _copy_in(cursor, table, columns, rows, text_columns=()):
    """COPY rows into `table` in CSV format, written by the csv module in C (twice as fast as
    building COPY's text format in Python). None is an empty field, read as NULL except in the
    text columns named, where it reads as the empty string they hold instead."""
    out = io.StringIO()
    # CRLF ends a record so that the csv module quotes any field holding a lone \r or \n too
    # (PostgreSQL would end the record there).
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    out.seek(0)
    options = f", FORCE_NOT_NULL ({', '.join(text_columns)})" if text_columns else ""
    cursor.cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv{options})", out)


def write_jobs(changed, now):
    """Write changed and new jobs and their events in one statement. `changed` holds
    (submission id, value tuple, whether the job is stored already, whether its state changed);
    a job whose state changed gets an event and `state_changed` at `now`."""
    job, event = Job._meta.db_table, JobEvent._meta.db_table
    columns = ("submission_id", *OBSERVED)
    names = ", ".join(columns)
    sets = ", ".join(f"{c} = i.{c}" for c in JOB_COLUMNS)
    with connection.cursor() as cursor:
        # Created once per connection, emptied by every commit (several chunks may share a
        # transaction, hence the TRUNCATE too).
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {INCOMING} ON COMMIT DELETE ROWS AS "
            f"SELECT {names}, true AS stored, true AS moved FROM {job} WITH NO DATA"
        )
        cursor.execute(f"TRUNCATE {INCOMING}")
        rows = [(sid, *values, stored, moved) for sid, values, stored, moved in changed]
        _copy_in(cursor, INCOMING, (*columns, "stored", "moved"), rows, TEXT_COLUMNS)
        # No lock ordering needed: writers of a submission's jobs hold its row lock.
        cursor.execute(
            f"WITH updated AS ("
            f"  UPDATE {job} j SET {sets}, state_changed = CASE WHEN i.moved THEN %(now)s ELSE j.state_changed END"
            f"  FROM {INCOMING} i WHERE i.stored AND j.submission_id = i.submission_id"
            f"  AND j.batch_job_id = i.batch_job_id RETURNING j.id, i.state, i.exit_code, i.moved"
            f"), inserted AS ("
            f"  INSERT INTO {job} ({names}, state_changed) SELECT {names}, %(now)s FROM {INCOMING} WHERE NOT stored"
            f"  RETURNING id, state, exit_code"
            f"), events AS ("
            f"  INSERT INTO {event} (job_id, state, exit_code, created)"
            f"  SELECT id, state, exit_code, %(now)s FROM updated WHERE moved"
            f"  UNION ALL SELECT id, state, exit_code, %(now)s FROM inserted"
            f") SELECT (SELECT count(*) FROM updated)",
            {"now": now},
        )
        (updated,) = cursor.fetchone()
    expected = sum(stored for _sid, _values, stored, _moved in changed)
    if updated != expected:
        raise StaleRows(f"{expected - updated} of {expected} job rows to update were not there")


class StaleRows(Exception):
    """The job rows compared with were not the stored ones (something else deleted jobs)."""
