"""Controlling what runs: hold / release / kill / cancel at submission, stage and campaign
scope; stage and experiment launch holds and the queue of held launches; approvals."""

import logging
from collections import defaultdict

from django.core.exceptions import PermissionDenied
from django.db import transaction

from campaigns.models import Stage
from poms.models import Role
from poms.permissions import actor_as, allowed
from submissions import services as ledger
from submissions.models import ACTIVE_STATUSES, Status, Submission

from . import batch
from .models import HeldLaunch, LaunchHold
from .services import LaunchError, LaunchHeld, LaunchUnavailable, launch_stage, poll_batch_systems

log = logging.getLogger(__name__)

# action → (batch-system method, status the submissions end in, or None when they stay active)
ACTIONS = {
    "hold": ("hold", None),
    "release": ("release", None),
    "kill": ("remove", Status.REMOVED),
    "cancel": ("remove", Status.CANCELLED),
}


def affected(scope, obj):
    """The active submissions an action at `scope` (submission, stage, campaign) reaches."""
    subs = Submission.objects.filter(status__in=ACTIVE_STATUSES).select_related("stage", "experiment")
    if scope == "submission":
        return subs.filter(pk=obj.pk)
    if scope == "stage":
        return subs.filter(stage=obj)
    if scope == "campaign":
        return subs.filter(stage__campaign=obj)
    raise ValueError(scope)


def control(subs, action, *, actor):
    """Hold, release, kill or cancel `subs`: one batch-system call per batch system.

    Submissions without a job id yet (launch still running) can only be killed/cancelled:
    they are simply marked, and the poller ignores them from then on.
    """
    if action not in ACTIONS:
        raise LaunchError(f"unknown action {action!r}")
    subs = list(subs)
    for sub in subs:
        if not allowed(actor, "act", creator_id=sub.creator_id, creator_role=sub.creator_role):
            raise PermissionDenied(f"Your acting role ({actor.role}) may not {action} submission {sub.pk}.")
    method, final = ACTIONS[action]
    by_system = defaultdict(list)
    for sub in subs:
        if sub.batch_id:
            by_system[sub.batch_system].append(batch.Target(sub.pk, sub.batch_id, sub.experiment.name))
    for system, targets in by_system.items():
        try:
            getattr(batch.get_backend(system), method)(targets)
        except batch.BatchError as exc:
            raise LaunchError(f"The {system} batch system refused to {action}: {exc}") from exc
    if final is not None:
        # A launch still running is stopped too; jobs it submits anyway are removed as it ends.
        launching = [s.pk for s in subs if not s.batch_id and s.launch_started and not s.launch_finished]
        Submission.objects.filter(pk__in=launching).update(abort_requested=True)
        for sub in subs:
            ledger.set_status(sub.pk, final, by=actor.user, cause=f"{action} by {actor.user.username}")
    poll_batch_systems(submission_ids=[s.pk for s in subs])
    log.info("%s of %d submissions by %s", action, len(subs), actor.user.username)
    return len(subs)


def set_stage_hold(stages, mode, *, actor):
    """The stages table's Hold / Queue / Release.

    queue: future launches of the stages are queued instead of run;
    hold: the same, and the stages' running jobs are held on the batch system;
    release: launches run again, held jobs are released, queued launches run oldest first.
    """
    if mode not in ("hold", "queue", "release"):
        raise LaunchError(f"unknown hold mode {mode!r}")
    for stage in stages:
        if not allowed(actor, "act", creator_id=stage.creator_id, creator_role=stage.creator_role):
            raise PermissionDenied(f"Your acting role ({actor.role}) may not {mode} stage {stage.name}.")
    ids = [s.pk for s in stages]
    with transaction.atomic():
        locked = list(Stage.objects.select_for_update().filter(pk__in=ids).order_by("pk"))
        if mode == "release":
            Stage.objects.filter(pk__in=ids).update(hold_by=None, hold_role="")
        else:
            Stage.objects.filter(pk__in=ids).update(hold_by=actor.user, hold_role=actor.role)
    if mode == "hold":
        control(Submission.objects.filter(stage__in=locked, status__in=ACTIVE_STATUSES), "hold", actor=actor)
    elif mode == "release":
        try:
            control(Submission.objects.filter(stage__in=locked, status=Status.HELD), "release", actor=actor)
        finally:  # the stages are released: their queued launches run even if the batch system balked
            launched = drain(HeldLaunch.objects.filter(stage__in=locked))
        return launched
    return []


def hold_launches(experiment, *, actor):
    """Queue every launch in `experiment` (None: everywhere, root only) until released."""
    _require_superuser(actor, experiment)
    LaunchHold.objects.get_or_create(experiment=experiment, defaults={"held_by": actor.user})


def release_launches(experiment, *, actor):
    _require_superuser(actor, experiment)
    LaunchHold.objects.filter(experiment=experiment).delete()
    queued = HeldLaunch.objects.all() if experiment is None else HeldLaunch.objects.filter(stage__experiment=experiment)
    return drain(queued)


def _require_superuser(actor, experiment):
    if actor.is_root or (experiment is not None and actor.role == Role.SUPERUSER):
        return
    raise PermissionDenied("Only an experiment superuser may hold or release all launches.")


def drain(queued):
    """Run queued launches oldest first, each as the person who asked. Returns the submissions.

    A launch that is still held (another hold applies) stays queued; the HeldLaunch row is
    deleted in the same transaction as the launch it becomes, so nothing runs twice.
    """
    launched = []
    for held in queued.select_related("stage", "stage__experiment", "launcher", "parent").order_by("created", "id"):
        actor = actor_as(held.launcher, held.stage.experiment, held.launcher_role)
        try:
            with transaction.atomic():
                if not HeldLaunch.objects.filter(pk=held.pk).delete()[0]:
                    continue  # another drain took it
                sub = launch_stage(
                    held.stage, actor=actor, dataset=held.dataset, parent=held.parent, overrides=held.overrides,
                    test=held.test,
                )  # fmt: skip
        except (LaunchHeld, LaunchUnavailable):
            continue  # still held elsewhere, or the catalogue is away: the rollback keeps the row and its place
        except (LaunchError, PermissionDenied) as exc:
            # It can never run (splits exhausted, a broken template, no longer allowed): drop it for good.
            HeldLaunch.objects.filter(pk=held.pk).delete()
            log.warning("queued launch %s of stage %s dropped: %s", held.pk, held.stage_id, exc)
            continue
        launched.append(sub)
    return launched


def delete_held_launch(held, *, actor):
    """Owners delete their own queued launches; superusers any in their experiment."""
    if held.launcher_id != actor.user.id and not (actor.is_root or actor.role == Role.SUPERUSER):
        raise PermissionDenied("Only the person who queued this launch, or a superuser, may delete it.")
    held.delete()


def visible_held_launches(actor, experiment):
    """What each role sees of the queue: analysis its own, production the production stages,
    superusers everything in the experiment (POMS held_launches page)."""
    queued = HeldLaunch.objects.filter(stage__experiment=experiment).select_related(
        "stage", "stage__campaign", "launcher"
    )
    if actor.is_root or actor.role == Role.SUPERUSER:
        return queued
    if actor.role == Role.ANALYSIS:
        return queued.filter(launcher=actor.user)
    return queued.exclude(stage__creator_role=Role.ANALYSIS)


def decide_approval(sub, approve, *, actor):
    """Approve (→ Completed) or reject (→ Removed) a submission awaiting approval."""
    if not allowed(actor, "act", creator_id=sub.creator_id, creator_role=sub.creator_role):
        raise PermissionDenied(f"Your acting role ({actor.role}) may not approve submission {sub.pk}.")
    target, verb = (Status.COMPLETED, "approved") if approve else (Status.REMOVED, "rejected")
    with transaction.atomic():  # checked and decided under the row lock: approve and reject cannot both win
        current = Status(Submission.objects.select_for_update().values_list("status", flat=True).get(pk=sub.pk))
        if current != Status.AWAITING_APPROVAL:
            raise LaunchError(f"Submission {sub.pk} is {current.label}, not awaiting approval.")
        ledger.set_status(sub.pk, target, by=actor.user, cause=f"{verb} by {actor.user.username}")


def launch_campaign(campaign, *, actor, test=False):
    """Launch the campaign's unique leading stage (one that depends on no other)."""
    leading = list(campaign.stages.filter(upstream_links__isnull=True).order_by("name"))
    if len(leading) != 1:
        names = ", ".join(s.name for s in leading) or "none"
        raise LaunchError(
            f"Cannot determine which stage of campaign {campaign.name} to launch: "
            f"{len(leading)} candidates ({names}). Launch a stage from its own page."
        )
    return launch_stage(leading[0], actor=actor, test=test)
