"""State changes of the ledger. Every submission status change goes through `_transition()`."""

import logging
from collections import Counter, defaultdict
from itertools import islice

from django.db import connection, transaction
from django.utils import timezone
from psycopg2.extras import execute_values

from . import ingest
from .models import StatusHistory, Submission
from .status import FINAL, decide, derive_from_jobs

log = logging.getLogger(__name__)

CHUNK = 500  # submissions per transaction in record_observations


def _transition(sub, proposed, *, now, by=None, cause=""):
    """Apply the status machine to `sub` in memory; return the history row to write, or None."""
    target = decide(sub.status, proposed, by_user=by is not None, is_recovery=sub.recovery_parent_id is not None)
    if target is None:
        return None
    sub.status = target
    sub.status_changed = now
    if target in FINAL:
        sub.finished = now
    return StatusHistory(submission_id=sub.pk, status=target, created=now, user=by, cause=cause[:200])


def create_submission(*, stage, launcher, role, params, test, snapshot, batch_system, parent=None):
    """A new submission in status New with its first history row. Caller owns the transaction."""
    now = timezone.now()
    sub = Submission.objects.create(
        stage=stage,
        experiment_id=stage.experiment_id,
        creator=launcher,
        creator_role=role,
        launcher=launcher,
        params=params,
        test=test,
        snapshot=snapshot,
        batch_system=batch_system,
        recovery_parent=parent,
        status_changed=now,
    )
    StatusHistory.objects.create(
        submission=sub, status=sub.status, created=now, user=launcher, cause="launch requested"
    )
    return sub


@transaction.atomic
def set_status(submission_id, status, *, by=None, cause=""):
    """Move one submission to `status` if the transition table allows it. True when it moved."""
    sub = Submission.objects.select_for_update().get(pk=submission_id)
    row = _transition(sub, status, now=timezone.now(), by=by, cause=cause)
    if row is None:
        return False
    sub.save(update_fields=["status", "status_changed", "finished"])
    row.save()
    log.info("submission %s → %s (%s)", sub.pk, sub.get_status_display(), cause)
    return True


def set_followups_pending(submission_id, pending):
    """Mark whether wrapup still owes this submission its recovery / dependent decisions."""
    Submission.objects.filter(pk=submission_id).update(followups_pending=pending)


def save_launch_record(submission_id, **fields):
    """Store what a launch runs (command, environment, target, log) or how it ended."""
    Submission.objects.filter(pk=submission_id).update(**fields)


def record_poll_error(submission_ids, message):
    """A failed poll changes no status; it only says why the numbers are stale."""
    Submission.objects.filter(pk__in=submission_ids).update(poll_error=message[:2000])


def record_observations(observations, *, polled_ids=(), now=None):
    """Write what a poll saw: only changed jobs, events and submission transitions, in bulk.

    Idempotent: a second run with the same observations writes nothing but `polled`. Two
    concurrent runs serialise on the submission row locks (taken in pk order) and the second
    finds nothing left to change. `polled_ids` are submissions the poll asked about, even if
    no job of theirs was reported.
    """
    now = now or timezone.now()
    by_sub = defaultdict(list)
    for obs in observations:
        by_sub[obs.submission_id].append(obs)
    ids = sorted(set(by_sub) | set(polled_ids))
    changed = 0
    it = iter(ids)
    while chunk := list(islice(it, CHUNK)):
        changed += _record_chunk(chunk, by_sub, now)
    return changed


@transaction.atomic
def _record_chunk(ids, by_sub, now):
    subs = {
        s.pk: s
        for s in Submission.objects.select_for_update()
        .filter(pk__in=ids)
        .order_by("pk")
        .only("id", "recovery_parent_id", *SUBMISSION_FIELDS)
    }
    # Most submissions look the same poll after poll: skip those whose observations hash the same
    # as last time without loading their jobs (the digest is written with the changes it stands for).
    digests = {sid: ingest.digest(by_sub.get(sid, ())) for sid in subs}
    ids = [sid for sid in ids if sid in subs and subs[sid].poll_digest != digests[sid]]
    current = ingest.load_jobs(ids)

    changed, events = [], []
    states = defaultdict(Counter)
    for sid in ids:
        known = current.get(sid, {})
        seen = set()
        for obs in by_sub.get(sid, ()):
            seen.add(obs.batch_job_id)
            states[sid][obs.state] += 1
            job_id, old_state, old_fp = known.get(obs.batch_job_id, (None, None, None))
            fp = ingest.fingerprint(obs)
            if fp == old_fp:
                continue
            moved = old_state != obs.state
            changed.append((job_id, sid, obs, fp, now if moved else None))
            if moved:
                events.append((sid, obs))
        # Jobs the batch system did not mention keep their stored state in the counts.
        for batch_job_id, (_job_id, old_state, _fp) in known.items():
            if batch_job_id not in seen:
                states[sid][old_state] += 1
    if changed:
        job_ids = ingest.write_jobs(changed)
        ingest.write_events([(job_ids[(sid, o.batch_job_id)], o.state, now, o.exit_code) for sid, o in events])

    history, dirty = [], []
    for sid in ids:
        sub = subs[sid]
        before = _row_state(sub)
        sub.poll_digest = digests[sid]
        counts = states[sid]
        for state in COUNTED:
            setattr(sub, f"jobs_{state}", counts[state])
        proposed = derive_from_jobs(counts)
        row = _transition(sub, proposed, now=now, cause="batch system poll") if proposed else None
        if row is not None:
            history.append(row)
            log.info("submission %s → %s (poll)", sub.pk, sub.get_status_display())
        if _row_state(sub) != before:
            dirty.append(sub)
    if dirty:
        _update_submissions(dirty)
    StatusHistory.objects.bulk_create(history)
    Submission.objects.filter(pk__in=list(subs)).update(polled=now, poll_error="")
    return len(changed) + len(history)


COUNTED = ("idle", "running", "held", "completed", "failed", "removed")
SUBMISSION_FIELDS = ["status", "status_changed", "finished", *(f"jobs_{c}" for c in COUNTED), "poll_digest"]


def _row_state(sub):
    return tuple(getattr(sub, f) for f in SUBMISSION_FIELDS)


def _update_submissions(subs):
    """One UPDATE … FROM (VALUES …) for the changed submissions: bulk_update's CASE WHEN per
    field costs more to build in Python than the statement costs PostgreSQL (bench/poll_ingest)."""
    table = Submission._meta.db_table
    columns = ", ".join(f"{f} = v.{f}" for f in SUBMISSION_FIELDS)
    names = ", ".join(SUBMISSION_FIELDS)
    sql = f"UPDATE {table} AS s SET {columns} FROM (VALUES %s) AS v(id, {names}) WHERE s.id = v.id"
    template = "(%s, %s, %s::timestamptz, %s::timestamptz" + ", %s" * (len(SUBMISSION_FIELDS) - 3) + ")"
    rows = [(sub.pk, *_row_state(sub)) for sub in subs]
    with connection.cursor() as cursor:
        execute_values(cursor.cursor, sql, rows, template=template, page_size=CHUNK)
