"""State changes of the ledger. Every submission status change goes through `_transition()`."""

import logging
from collections import Counter, defaultdict
from itertools import islice
from operator import itemgetter

from django.db import connection, transaction
from django.utils import timezone
from psycopg2.extras import execute_values

from poms.lib.memory import paused_gc
from poms.models import CallbackToken

from . import ingest
from .models import StatusHistory, Submission
from .status import FINAL, decide, derive_from_jobs

log = logging.getLogger(__name__)

CHUNK = 500  # submissions per transaction in record_observations
SKIM = 10 * CHUNK  # submissions per query when looking for the unchanged ones


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
    _revoke_tokens_of_ended([row])
    log.info("submission %s → %s (%s)", sub.pk, sub.get_status_display(), cause)
    return True


def _revoke_tokens_of_ended(history):
    """Callback tokens live as long as their submission can still call back, not for ever: a
    submission in a final status has no job left. (LaunchFailed is not final: a launch that
    exited non-zero may still have submitted jobs, and their polls may yet revive it.)"""
    ended = [row.submission_id for row in history if row.status in FINAL]
    if ended:
        CallbackToken.objects.filter(submission_id__in=ended).delete()


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
    with paused_gc():
        return _record_observations(observations, polled_ids, now or timezone.now())


def _record_observations(observations, polled_ids, now):
    # Each submission's observations as value tuples, in the order reported.
    by_sub, values_of = defaultdict(list), ingest.values_of
    for obs in observations:
        by_sub[obs.submission_id].append(values_of(obs))
    ids = sorted(set(by_sub) | set(polled_ids))
    changed = 0
    it = iter(ids)
    while batch := list(islice(it, SKIM)):
        # Most submissions look the same poll after poll. Those observed exactly as this process
        # last wrote them are skipped without a lock: a skip writes nothing, so it cannot undo a
        # concurrent writer. The rest are locked and checked again, CHUNK at a time.
        versions = dict(Submission.objects.filter(pk__in=batch).values_list("id", "poll_version"))
        same = {sid for sid in batch if _as_mirrored(sid, versions.get(sid), by_sub)}
        _stamp_polled(same, now)
        rest = iter([sid for sid in batch if sid not in same])
        while chunk := list(islice(rest, CHUNK)):
            try:
                changed += _record_chunk(chunk, by_sub, now)
            except Exception:
                # Whatever failed, this process's copies of these submissions' rows are suspect.
                ingest.MIRROR.forget(chunk)
                raise
    return changed


def _stamp_polled(ids, now):
    """Stamp submissions a poll found unchanged. Rows are locked in id order, as every writer
    locks them, and those a concurrent poll holds are skipped: it stamps them itself."""
    if not ids:
        return
    table = Submission._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET polled = %s, poll_error = '' WHERE id IN "
            f"(SELECT id FROM {table} WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE SKIP LOCKED)",
            [now, sorted(ids)],
        )


def _as_mirrored(sid, version, by_sub):
    mirrored = ingest.MIRROR.get(sid, version)
    return mirrored is not None and mirrored.observed == by_sub.get(sid, [])


@transaction.atomic
def _record_chunk(ids, by_sub, now):
    subs = {
        s.pk: s
        for s in Submission.objects.select_for_update()
        .filter(pk__in=ids)
        .order_by("pk")
        .only("id", "recovery_parent_id", *SUBMISSION_FIELDS)
    }
    ids = [sid for sid in ids if sid in subs]
    observed = {sid: by_sub.get(sid, []) for sid in ids}
    # This process's copy of the rows where it is still current (checked again under the lock),
    # else the rows themselves.
    mirrored = {sid: ingest.MIRROR.get(sid, subs[sid].poll_version) for sid in ids}
    jobs = {sid: m.jobs for sid, m in mirrored.items() if m is not None}
    jobs.update(ingest.load_jobs([sid for sid in ids if sid not in jobs]))

    changed, touched = [], set()
    for sid in ids:
        known = jobs[sid]
        # A job listed twice in one answer counts as last listed.
        for values in {values[0]: values for values in observed[sid]}.values():
            old = known.get(values[0])
            if values == old or (values := ingest.as_stored(values)) == old:
                continue
            if sid not in touched:  # copy before the first change: `known` may be the mirror's
                touched.add(sid)
                known = jobs[sid] = dict(known)
            changed.append((sid, values, old is not None, old is None or old[1] != values[1]))
            known[values[0]] = values
    if changed:
        ingest.write_jobs(changed, now)

    history, dirty = [], []
    for sid in ids:
        sub = subs[sid]
        before = _row_state(sub)
        if sid in touched:
            sub.poll_version = ingest.new_version()
        # The copy is the rows as of this version: just written, or read under the lock. Safe
        # before the commit: if it rolls back, the stored version is not a new one written here.
        ingest.MIRROR.put(sid, sub.poll_version, jobs[sid], observed[sid])
        # Jobs the batch system did not mention keep their stored state in the counts.
        counts = Counter(map(STATE, jobs[sid].values()))
        for state in COUNTED:
            setattr(sub, f"jobs_{state}", counts[state])
        proposed = derive_from_jobs(counts)
        row = _transition(sub, proposed, now=now, cause="batch system poll") if proposed else None
        if row is not None:
            history.append(row)
            log.info("submission %s → %s (poll)", sub.pk, sub.get_status_display())
        if _row_state(sub) != before:
            dirty.append(sub)
    _update_submissions(dirty, now)
    StatusHistory.objects.bulk_create(history)
    _revoke_tokens_of_ended(history)
    # The rest were polled too: one UPDATE, not one per submission.
    written = {sub.pk for sub in dirty}
    Submission.objects.filter(pk__in=[sid for sid in subs if sid not in written]).update(polled=now, poll_error="")
    return len(changed) + len(history)


STATE = itemgetter(1)  # of a value tuple
COUNTED = ("idle", "running", "held", "completed", "failed", "removed")
SUBMISSION_FIELDS = [
    "status", "status_changed", "finished", *(f"jobs_{c}" for c in COUNTED), "poll_version",
]  # fmt: skip


def _row_state(sub):
    return tuple(getattr(sub, f) for f in SUBMISSION_FIELDS)


def _update_submissions(subs, polled):
    """One UPDATE … FROM (VALUES …) for the changed submissions, stamping them polled: bulk_update's
    CASE WHEN per field costs more to build in Python than the statement costs PostgreSQL
    (bench/poll_ingest)."""
    if not subs:
        return
    table = Submission._meta.db_table
    columns = ", ".join(f"{f} = v.{f}" for f in SUBMISSION_FIELDS)
    names = ", ".join(SUBMISSION_FIELDS)
    sql = (
        f"UPDATE {table} AS s SET {columns}, polled = v.polled, poll_error = '' "
        f"FROM (VALUES %s) AS v(id, {names}, polled) WHERE s.id = v.id"
    )
    template = "(%s, %s, %s::timestamptz, %s::timestamptz" + ", %s" * (len(SUBMISSION_FIELDS) - 4)
    template += ", %s::bigint, %s::timestamptz)"
    rows = [(sub.pk, *_row_state(sub), polled) for sub in subs]
    with connection.cursor() as cursor:
        execute_values(cursor.cursor, sql, rows, template=template, page_size=CHUNK)
