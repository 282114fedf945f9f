"""Recovery launches: after a submission is Located, relaunch its stage on the files that
failed or were never consumed, walking the job type's ordered recovery list (POMS §5)."""

import logging
import uuid

from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns.models import RecoveryType
from sam_adapter import query as q
from submissions.datasets import config_of_submission, handler_of, output_patterns, pattern_query, with_constraints
from submissions.models import Submission

from .models import FollowUp
from .services import LaunchError, LaunchHeld, launch_stage

log = logging.getLogger(__name__)

NOT_CONSUMED = (q.SKIPPED, q.UNKNOWN, q.DELIVERED, q.TRANSFERRED, q.UNCONSUMED, q.CANCELLED)


def recovery_query(kind, sub, handler):
    """The files a recovery of `kind` would run on, for `sub`'s project; None when not applicable."""
    project = sub.params.get("project")
    if not project:
        return None
    if kind == RecoveryType.CONSUMED_STATUS:
        return q.Minus(q.ProjectSnapshot(project), q.ProjectFiles(project, (q.CONSUMED_LIKE,)))
    if kind == RecoveryType.PROCESS_STATUS:
        return handler.process_recovery(project)
    if kind == RecoveryType.ADDED_FILES:
        return q.Minus(q.Dataset(sub.dataset), q.ProjectSnapshot(project)) if sub.dataset else None
    if kind == RecoveryType.DELIVERED_NOT_CONSUMED:
        # POMS left the project name out of this one (an unfilled %s); we fill it in.
        return q.ProjectFiles(project, NOT_CONSUMED)
    if kind == RecoveryType.PENDING_FILES:
        stage = config_of_submission(sub)["stage"]
        version, depth = stage.get("software_version") or None, stage.get("output_ancestor_depth") or 1
        with_kids = None
        for pattern in output_patterns(sub):
            # Inputs without *located* kids, as SAM answers POMS's dims (no availability clause).
            node = with_constraints(
                pattern_query(pattern), version=version, created_after=sub.created, availability="physical"
            )
            part = q.ParentsOf(node, depth)
            with_kids = part if with_kids is None else q.And(with_kids, part)
        return q.Minus(q.ProjectSnapshot(project), with_kids)
    raise LaunchError(f"unknown recovery type {kind!r}")


def launch_recovery_if_needed(sub, actor, only=None):
    """Launch the next non-empty recovery for `sub`; True if one was launched (or queued).

    Position semantics as POMS: the list position lives on the original submission; a
    recovery's own leftovers are examined from its project. On the original's first pass
    the position does not advance when it launches, so the first recovery type is applied
    to the original's project and then once more to that recovery's leftovers.
    `only` forces one recovery type (the manual "Launch recovery" button).
    """
    if only is None and FollowUp.objects.filter(submission=sub, kind=FollowUp.RECOVERY).exists():
        return True  # an earlier wrapup of `sub` launched its recovery: under way, nothing more to launch
    parent = sub.recovery_parent or sub
    recoveries = config_of_submission(parent)["recoveries"] if only is None else [{"type": only, "param_overrides": []}]
    handler = handler_of(sub)
    position = parent.recovery_position if only is None else 0
    first_pass = sub.recovery_parent_id is None and only is None
    while position < len(recoveries):
        step = recoveries[position]
        at = position
        if not first_pass or only is not None:
            position += 1
        # A DataHandlerError propagates: wrapup retries later rather than skip a recovery it could not count.
        found = recovery_query(step["type"], sub, handler)
        count = handler.count(found) if found is not None else 0
        if first_pass and not count:
            position += 1
        first_pass = False
        if count:
            name = f"poms_recover_{uuid.uuid4().hex[:8]}_{parent.pk}_{at}"
            launched = _launch(sub, parent, at if only is None else None, step, name, found, count, handler, actor)
            if only is None:  # a manual recovery leaves the automatic list where it was
                Submission.objects.filter(pk=parent.pk).update(recovery_position=position)
            return launched
    if only is None:
        Submission.objects.filter(pk=parent.pk).update(recovery_position=position)
    return False


def _launch(sub, parent, at, step, name, found, count, handler, actor):
    handler.define(name, found)
    entry = {
        "name": name,
        "type": step["type"],
        "count": count,
        "query": q.to_json(found),
        "at": timezone.now().isoformat(),
    }
    try:
        with transaction.atomic():
            if at is not None:  # automatic: the constraint makes a second wrapup do nothing
                FollowUp.objects.create(submission=sub, kind=FollowUp.RECOVERY, position=at, dataset=name)
            _log_workflow(parent.pk, "recoveries", entry)
            try:
                new = launch_stage(
                    sub.stage, actor=actor, dataset=name, parent=parent, overrides=step.get("param_overrides") or [],
                    test=parent.test,
                )  # fmt: skip
            except LaunchHeld:
                return True  # queued behind a hold (committed with this block): it runs when released
    except IntegrityError:
        return True  # an earlier wrapup launched this recovery already: it is under way, no dependents yet
    FollowUp.objects.filter(submission=sub, kind=FollowUp.RECOVERY, position=at).update(launched=new)
    log.info(
        "recovery %s of submission %s launched as %s on %s (%d files)", step["type"], parent.pk, new.pk, name, count
    )
    return True


def _log_workflow(submission_id, key, entry):
    """Append to params.workflow.<key>, the record of every dataset POMS made for a submission."""
    sub = Submission.objects.select_for_update().get(pk=submission_id)
    workflow = sub.params.get("workflow", {})
    workflow.setdefault(key, []).append(entry)
    Submission.objects.filter(pk=submission_id).update(params={**sub.params, "workflow": workflow})
