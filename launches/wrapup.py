"""Wrapup, the workflow engine (DESIGN §4, reference/poms.md §6.1): Completed → Located by
the stage's completion type, then recovery first and, only when none is needed, dependents."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from campaigns.models import CompletionType, StageType
from poms.permissions import actor_as
from sam_adapter import query as q
from sam_adapter.interface import DataHandlerError
from submissions import services as ledger
from submissions.datasets import config_of_submission, handler_of, located_outputs
from submissions.models import Status, Submission

from .dependencies import dependency_dataset_name, launch_dependents
from .recovery import launch_recovery_if_needed
from .services import LaunchError, require

log = logging.getLogger(__name__)
CHUNK = 100


def wrapup(submission_ids=None, now=None):
    """One pass: returns the ids marked Located. Safe to run twice or concurrently: each
    submission is claimed with SKIP LOCKED and Located only once (the status machine), and
    each follow-up launch is guarded by the FollowUp constraints. A pass examines at most CHUNK
    submissions of each kind, the least recently examined first."""
    now = now or timezone.now()
    located = []
    for sid in _least_recently_checked(Submission.objects.filter(status=Status.COMPLETED), submission_ids):
        try:
            if locate_if_ready(sid, now):
                located.append(sid)
        except Exception:  # one bad submission (or a garbled catalogue reply) must not stop the others
            log.exception("located check of submission %s failed", sid)
            _checked(sid, now)
    for sid in _least_recently_checked(Submission.objects.filter(followups_pending=True), submission_ids):
        try:
            follow_up(sid)
        except DataHandlerError as exc:
            # Not knowing whether files need recovering is not "nothing to recover": try again next pass.
            log.warning("follow-ups of submission %s postponed: %s", sid, exc)
            _checked(sid, now)
        except Exception:  # one bad submission must not stop the others (POMS 2020 fix)
            log.exception("follow-ups of submission %s failed", sid)
            ledger.set_followups_pending(sid, False)
    return located


def _least_recently_checked(todo, submission_ids):
    if submission_ids is not None:
        todo = todo.filter(pk__in=submission_ids)
    order = (F("wrapup_checked").asc(nulls_first=True), "pk")
    return list(todo.order_by(*order).values_list("pk", flat=True)[:CHUNK])


def _checked(sid, now):
    Submission.objects.filter(pk=sid).update(wrapup_checked=now)


def locate_if_ready(sid, now):
    with transaction.atomic():
        sub = (
            Submission.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("stage", "stage__campaign", "experiment", "snapshot", "launcher")
            .filter(pk=sid, status=Status.COMPLETED)
            .first()
        )
        if sub is None:
            return False  # another wrapup holds it, or it moved on
        refresh_file_counts(sub)
        reason = located_reason(sub, now)
        if reason is None or not ledger.set_status(sub.pk, Status.LOCATED, cause=reason):
            _checked(sub.pk, now)
            return False
        if settings.POMS_LAUNCH_FOLLOWUPS:
            ledger.set_followups_pending(sub.pk, True)  # in the same transaction as Located
        return True


def located_reason(sub, now):
    """Why `sub` counts as Located now (the history cause), or None if it does not yet."""
    stage = config_of_submission(sub)["stage"]
    if stage.get("completion_type", CompletionType.LOCATED) == CompletionType.COMPLETE:
        return "completion type complete"
    if stage.get("stage_type") == StageType.APPROVAL:
        return "approved: an approval makes no files to locate"
    if sub.params.get("force_located"):
        return "kicked to Located by a user"
    if sub.created < now - timedelta(seconds=settings.POMS_LOCATED_TIMEOUT):
        Submission.objects.filter(pk=sub.pk).update(params={**sub.params, "located_by_timeout": True})
        return f"timeout: outputs not located within {settings.POMS_LOCATED_TIMEOUT // 3600} h"
    try:
        found, needed = located_counts(sub, stage)
    except DataHandlerError as exc:
        log.warning("located check of submission %s postponed: %s", sub.pk, exc)
        return None
    if found >= needed and (needed > 0 or sub.recovery_parent_id):
        return f"outputs located: {found} ≥ {needed:g} ({stage.get('completion_pct', 95):g} %)"
    return None


def located_counts(sub, stage):
    """(files with located outputs, files needed) for the completion_pct rule."""
    handler = handler_of(sub)
    pct = (stage.get("completion_pct") or 95) / 100
    project = sub.params.get("project")
    if project:
        summary = handler.project_summary(project)
        consumed = summary.count(q.CONSUMED, q.COMPLETED)
        found = handler.count(located_outputs(sub))
        return found, consumed * pct
    # No project (e.g. generator stages): the dataset the jobs declared, against the job count.
    name = dependency_dataset_name(sub, 1)
    found = handler.count(q.Dataset(name)) if handler.definition_exists(name) else 0
    Submission.objects.filter(pk=sub.pk).update(files_generated=found)
    return found, sub.jobs_total * pct


def refresh_file_counts(sub):
    """Cache the project's numbers on the submission for the stage and campaign progress bars."""
    if not sub.params.get("project"):
        return
    try:
        record_file_counts(sub, handler_of(sub).project_summary(sub.params["project"]))
    except DataHandlerError as exc:
        log.warning("file counts of submission %s not refreshed: %s", sub.pk, exc)


def record_file_counts(sub, summary):
    Submission.objects.filter(pk=sub.pk).update(
        files_total=summary.files_in_snapshot,
        files_consumed=summary.count(q.CONSUMED, q.COMPLETED),
        files_failed=summary.count(q.FAILED),
    )


def follow_up(sid):
    """Recovery first; only when no recovery is needed, the dependents — as the submission's
    launcher acting under the stage's role."""
    sub = Submission.objects.select_related("stage", "stage__campaign", "experiment", "launcher", "snapshot").get(
        pk=sid
    )
    actor = actor_as(sub.launcher, sub.experiment, sub.stage.creator_role)
    if not launch_recovery_if_needed(sub, actor):
        launch_dependents(sub, actor)
    ledger.set_followups_pending(sub.pk, False)


def kick(sub, target, *, actor):
    """A person's Kick to Completed or Kick to Located (then wrapup runs at once)."""
    require(actor, sub, "act")
    if target == "completed":
        if not ledger.set_status(sub.pk, Status.COMPLETED, by=actor.user, cause=f"kicked by {actor.user.username}"):
            raise LaunchError(f"Submission {sub.pk} cannot go from {sub.get_status_display()} to Completed.")
        return
    if target != "located":
        raise LaunchError(f"unknown kick {target!r}")
    with transaction.atomic():
        # Decided under the row lock, and nothing is written when the kick is refused: a refused
        # kick must not Locate the submission later on its own.
        locked = Submission.objects.select_for_update().get(pk=sub.pk)
        if locked.status not in KICKABLE_TO_LOCATED:
            raise LaunchError(f"Submission {sub.pk} is {locked.get_status_display()}: it cannot be kicked to Located.")
        Submission.objects.filter(pk=sub.pk).update(params={**locked.params, "force_located": True})
        if locked.status != Status.COMPLETED:
            ledger.set_status(sub.pk, Status.COMPLETED, by=actor.user, cause=f"kicked by {actor.user.username}")
    if not wrapup(submission_ids=[sub.pk]):
        raise LaunchError(f"Submission {sub.pk} is being wrapped up already; it will be Located shortly.")


# Its jobs are over (or never ran): a person may declare its outputs Located.
KICKABLE_TO_LOCATED = (Status.COMPLETED, Status.FAILED, Status.REMOVED, Status.CANCELLED, Status.LAUNCH_FAILED)
