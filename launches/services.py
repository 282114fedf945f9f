"""The engine's state changes: launch a stage, run a launch, poll, control jobs (DESIGN §4)."""

import logging
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from campaigns.models import Stage, StageType
from campaigns.services import config_of, snapshot_config
from poms.permissions import allowed
from poms.tokens import issue_callback_token
from sam_adapter.backends import handler_for
from sam_adapter.interface import DataHandlerError
from submissions import services as ledger
from submissions.models import Status, Submission

from . import batch
from .compose import ComposeError, compose, with_campaign_keywords
from .models import HeldLaunch, LaunchHold
from .runners import RunnerError, runner_for
from .splits import SplitError, SplitsExhausted, next_split

log = logging.getLogger(__name__)


class LaunchError(Exception):
    """A launch request that cannot proceed; the message is shown to the user."""


class LaunchUnavailable(LaunchError):
    """A launch that cannot proceed now but may later (the data handling service did not answer)."""


class LaunchHeld(LaunchError):
    """Launches are held: the request was queued as `held` instead of run (HTTP 423)."""

    def __init__(self, held):
        super().__init__(f"Launches are held ({held.reason}); your launch of {held.stage} was queued.")
        self.held = held


def hold_reason(stage, lock=False):
    """Why launches of `stage` are held right now, or "" when they may run."""
    return hold_of(stage, lock)[0]


def hold_of(stage, lock=False):
    """(why launches of `stage` are held, by whom), or ("", None).

    With `lock`, an experiment or global hold row is locked until the caller's transaction ends,
    so a release deleting it waits for a launch being queued behind it and then drains that too."""
    if stage.hold_by_id:
        return f"stage {stage.name} held by {stage.hold_by.username}", stage.hold_by
    holds = LaunchHold.objects.filter(Q(experiment_id=stage.experiment_id) | Q(experiment=None)).order_by("pk")
    if lock:
        holds = holds.select_for_update(no_key=True, of=("self",))
    hold = holds.select_related("experiment", "held_by").first()
    if hold is not None:
        return f"launches in {hold.experiment or 'all experiments'} held by {hold.held_by.username}", hold.held_by
    return "", None


def require(actor, obj, need):
    if not allowed(actor, need, creator_id=obj.creator_id, creator_role=obj.creator_role):
        raise PermissionDenied(f"Your acting role ({actor.role}) may not {need} on {obj}.")


def _pick_dataset(stage, test, dataset, *, dry=False):
    """Explicit dataset, else the stage's split type picks the next slice and its new cursor.

    The caller holds the stage row lock, so two launches never take the same slice. A dry run
    defines nothing and its cursor is thrown away."""
    if dataset is not None:
        return dataset, stage.split_cursor

    def handler():
        return handler_for(stage.experiment, stage.campaign.data_handling or None)

    try:
        dataset = with_campaign_keywords(stage.dataset, stage.campaign.keywords or {})
        return next_split(stage, test=test, handler=handler, dry=dry, dataset=dataset)
    except ComposeError as exc:
        raise LaunchError(f"The stage dataset {stage.dataset!r} cannot be expanded: {exc}") from exc
    except (SplitsExhausted, SplitError) as exc:
        raise LaunchError(str(exc)) from exc
    except DataHandlerError as exc:
        raise LaunchUnavailable(f"The data handling service could not give the next split: {exc}") from exc


def dry_run(stage, *, actor, dataset=None, test=False, overrides=()):
    """Exactly what a launch would run, creating nothing (the split cursor does not move)."""
    require(actor, stage, "act")
    test = test or stage.campaign.is_test
    if dataset is None:
        dataset, _ = _pick_dataset(stage, test, None, dry=True)
    try:
        return compose(config_of(stage), dataset=dataset, test=test, overrides=overrides, launcher=actor.user.username)
    except ComposeError as exc:
        raise LaunchError(f"The launch command cannot be composed: {exc}") from exc


def launch_stage(stage, *, actor, dataset=None, parent=None, overrides=(), test=False):
    """Record a launch of `stage` and hand it to a worker. Returns the New submission.

    While launches are held the request is queued as a HeldLaunch and LaunchHeld is raised.
    The hold is checked under the stage's row lock, which releasing takes too, so a launch
    cannot slip into the queue after the queue was drained.
    """
    require(actor, stage, "act")
    test = test or stage.campaign.is_test or bool(parent and parent.test)
    overrides = [list(p) for p in overrides]
    with transaction.atomic():
        stage = (
            Stage.objects.select_for_update(of=("self",))
            .select_related("campaign", "job_type", "login_setup", "experiment", "hold_by")
            .get(pk=stage.pk)
        )
        reason = hold_reason(stage, lock=True)
        if reason:
            held = _queue(stage, actor.user, actor.role, dataset, parent, overrides, test, reason)
        else:
            sub = _record_launch(stage, actor, dataset, parent, overrides, test)
    if reason:
        log.info("launch of stage=%s queued (%s) by=%s", stage.pk, reason, actor.user.username)
        raise LaunchHeld(held)
    log.info("launch requested stage=%s submission=%s by=%s", stage.pk, sub.pk, actor.user.username)
    return sub


def _queue(stage, launcher, role, dataset, parent, overrides, test, reason):
    """A HeldLaunch: everything to run the launch later exactly as asked, as who asked."""
    return HeldLaunch.objects.create(
        stage=stage, launcher=launcher, launcher_role=role, dataset=dataset, parent=parent, overrides=overrides,
        test=test, reason=reason,
    )  # fmt: skip


def _record_launch(stage, actor, dataset, parent, overrides, test):
    chosen, cursor = _pick_dataset(stage, test, dataset)
    snapshot = snapshot_config(stage)
    try:  # fail now, not in the worker, if the command cannot be composed
        compose(snapshot.content, dataset=chosen, test=test, overrides=overrides, launcher=actor.user.username)
    except ComposeError as exc:
        raise LaunchError(f"The launch command cannot be composed: {exc}") from exc
    if cursor != stage.split_cursor:
        Stage.objects.filter(pk=stage.pk).update(split_cursor=cursor)
    params = {"dataset": chosen, "overrides": overrides}
    if dataset is None:
        # The shared config snapshot cannot hold a per-launch cursor; this one lets a user restore it.
        params["split_cursor"] = stage.split_cursor
    if test:
        params["test"] = 1
    if parent is not None:
        params["parent"] = parent.pk
    sub = ledger.create_submission(
        stage=stage,
        launcher=actor.user,
        role=stage.creator_role,
        params=params,
        test=test,
        snapshot=snapshot,
        batch_system=stage.job_type.batch_system,
        parent=parent,
    )
    if stage.stage_type == StageType.APPROVAL:
        ledger.set_status(sub.pk, Status.AWAITING_APPROVAL, cause="approval stage: nothing runs")
    else:
        from .tasks import launch_submission  # tasks import services; import here to avoid a cycle

        launch_submission.delay_on_commit(sub.pk)
    return sub


def log_path_for(sub):
    stamp = sub.created.strftime("%Y%m%d_%H%M%S")
    return (
        Path(settings.POMS_LOG_ROOT)
        / "launches"
        / f"stage_{sub.stage_id}"
        / f"{stamp}_{sub.launcher.username}_{sub.pk}.log"
    )


def run_launch(submission_id):
    """Claim a New submission, compose its command, run it, capture the batch id.

    The claim is a conditional update: a second delivery of the same task finds nothing to do.
    """
    now = timezone.now()
    if _queue_if_held(submission_id):
        return False
    if not Submission.objects.filter(pk=submission_id, status=Status.NEW, launch_started=None).update(
        launch_started=now
    ):
        log.info("submission %s already claimed; nothing to do", submission_id)
        return False
    sub = Submission.objects.select_related("launcher", "snapshot", "experiment").get(pk=submission_id)
    try:
        return _run_claimed(sub, now)
    except Exception as exc:
        # Claimed, so no retry will pick it up: say why now rather than leave it New for hours.
        log.exception("launch of submission %s crashed", sub.pk)
        ledger.save_launch_record(sub.pk, launch_finished=timezone.now())
        ledger.set_status(sub.pk, Status.LAUNCH_FAILED, cause=f"launch crashed: {type(exc).__name__}: {exc}"[:200])
        raise


def _queue_if_held(submission_id):
    """A launch whose stage (or experiment) was held after it was requested does not run: it
    goes back to the queue as it was asked — same dataset, so no split slice is lost — and this
    submission ends Cancelled, saying so. True when that happened."""
    with transaction.atomic():
        sub = (
            Submission.objects.select_for_update(of=("self",))
            .select_related("launcher", "recovery_parent")
            .filter(pk=submission_id, status=Status.NEW, launch_started=None)
            .first()
        )
        if sub is None:
            return False
        stage = Stage.objects.select_for_update(of=("self",)).select_related("hold_by").get(pk=sub.stage_id)
        reason, holder = hold_of(stage, lock=True)
        if not reason:
            return False
        overrides = sub.params.get("overrides", [])
        held = _queue(
            stage, sub.launcher, sub.creator_role, sub.dataset, sub.recovery_parent, overrides, sub.test, reason
        )
        ledger.set_status(sub.pk, Status.CANCELLED, by=holder, cause=f"{reason} before it ran: queued as {held.pk}")
    log.info("launch of submission %s queued again as held launch %s (%s)", submission_id, held.pk, reason)
    return True


def _run_claimed(sub, now):
    log_path = log_path_for(sub)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        plan = compose(
            sub.snapshot.content,
            dataset=sub.dataset,
            test=sub.test,
            overrides=sub.params.get("overrides", ()),
            launcher=sub.launcher.username,
            submission_id=sub.pk,
            parent_id=sub.recovery_parent_id,
        )
        run = runner_for(plan)
    except (ComposeError, RunnerError) as exc:
        log_path.write_text(f"launch not started: {exc}\n")
        ledger.save_launch_record(sub.pk, launch_log=str(log_path), launch_finished=timezone.now())
        ledger.set_status(sub.pk, Status.LAUNCH_FAILED, cause=str(exc)[:200])
        return False
    token = issue_callback_token(sub.launcher, sub.experiment, sub.pk)
    ledger.save_launch_record(
        sub.pk,
        command=plan.command,
        environment=plan.environment,
        runner_target=plan.target,
        launch_log=str(log_path),
    )
    with open(log_path, "a") as header:
        header.write(f"== POMS launch of submission {sub.pk} on {plan.target} at {now.isoformat()} ==\n")
    result = run(
        plan,
        log_path=log_path,
        timeout=settings.POMS_LAUNCH_RUN_TIMEOUT,
        should_stop=lambda: Submission.objects.filter(pk=sub.pk, abort_requested=True).exists(),
        secrets={"POMS_SUBMISSION_TOKEN": token},
    )
    return _finish_launch(sub, result, log_path)


def _finish_launch(sub, result, log_path):
    """Record how the launch process ended; LaunchFailed unless it exited 0 with a job id."""
    batch_id = batch.get_backend(sub.batch_system).parse_batch_id(log_path.read_text(errors="replace"))
    ending = " (timed out, killed)" if result.timed_out else " (aborted)" if result.stopped else ""
    with open(log_path, "a") as footer:
        footer.write(f"== exit code {result.returncode}{ending} ==\n")
    record = {"launch_finished": timezone.now(), "launch_exit_code": result.returncode}
    if batch_id:
        record["batch_id"] = batch_id
    ledger.save_launch_record(sub.pk, **record)
    # A wrapper may have reported the job id through the callback API instead of printing it.
    batch_id = batch_id or Submission.objects.values_list("batch_id", flat=True).get(pk=sub.pk)
    if batch_id and Submission.objects.filter(pk=sub.pk, status__in=(Status.REMOVED, Status.CANCELLED)).exists():
        _remove_orphans(sub, batch_id)
    if result.timed_out or result.stopped or result.returncode != 0 or not batch_id:
        why = (
            "timed out" if result.timed_out
            else "aborted" if result.stopped
            else f"exit code {result.returncode}" if result.returncode
            else "no job id"
        )  # fmt: skip
        ledger.set_status(sub.pk, Status.LAUNCH_FAILED, cause=f"launch failed: {why}")
        return False
    return True


def _remove_orphans(sub, batch_id):
    """Killed or cancelled while its launch ran: the jobs the launch submitted anyway go too."""
    try:
        batch.get_backend(sub.batch_system).remove([batch.Target(sub.pk, batch_id, sub.experiment.name)])
        log.info("submission %s was killed during its launch; its jobs %s removed", sub.pk, batch_id)
    except batch.BatchError as exc:
        log.warning(
            "submission %s was killed during its launch; removing its jobs %s failed: %s", sub.pk, batch_id, exc
        )


def abort_launch(sub, *, actor):
    """Kill a launch that is still running (POMS abort_launch): the worker running it sees the
    request within a second and kills the launch's whole process group."""
    require(actor, sub, "act")
    if sub.launch_started is None or sub.launch_finished is not None:
        raise LaunchError(f"Submission {sub.pk} has no launch running.")
    Submission.objects.filter(pk=sub.pk).update(abort_requested=True)


def poll_batch_systems(names=None, submission_ids=None):
    """One batched query per batch system for all its active submissions."""
    active = Submission.objects.active()
    if submission_ids is not None:
        active = active.filter(pk__in=submission_ids)
    by_system = {}
    for sid, system, batch_id, group in active.values_list("id", "batch_system", "batch_id", "experiment__name"):
        by_system.setdefault(system, []).append(batch.Target(sid, batch_id, group))
    for system, targets in by_system.items():
        if names and system not in names:
            continue
        ids = [t.submission_id for t in targets]
        try:
            observations = batch.get_backend(system).poll(targets)
        except batch.BatchError as exc:
            log.warning("poll of %s failed: %s", system, exc)
            ledger.record_poll_error(ids, f"{timezone.now():%Y-%m-%d %H:%M} UTC: {exc}")
            continue
        problems = getattr(observations, "problems", {})
        for sid, problem in problems.items():
            log.warning("poll of submission %s on %s failed: %s", sid, system, problem)
            ledger.record_poll_error([sid], f"{timezone.now():%Y-%m-%d %H:%M} UTC: {problem}")
        ledger.record_observations(observations, polled_ids=[sid for sid in ids if sid not in problems])


def mark_failed_launches():
    """Submissions still New after the launch timeout become LaunchFailed: no job id reported, or
    a job id under which the batch system never showed a job."""
    cutoff = timezone.now() - timezone.timedelta(seconds=settings.POMS_LAUNCH_FAILED_AFTER)
    stale = Submission.objects.filter(status=Status.NEW, created__lt=cutoff).values_list("id", "batch_id")
    for sid, batch_id in stale:
        cause = (
            f"no job of batch id {batch_id} seen within the launch timeout"
            if batch_id
            else "no job id reported within the launch timeout"
        )
        ledger.set_status(sid, Status.LAUNCH_FAILED, cause=cause[:200])


def relaunch(sub, *, actor):
    """Launch the submission's stage again on the same dataset (POMS "Relaunch")."""
    return launch_stage(
        sub.stage, actor=actor, dataset=sub.dataset, parent=sub.recovery_parent,  # a recovery stays one
        overrides=sub.params.get("overrides", ()), test=sub.test,
    )  # fmt: skip
