"""Dependent launches: when a submission is Located and needs no recovery, launch each
downstream stage on a dataset of this submission's outputs (POMS §6.2)."""

import logging

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns.models import StageDependency, StageType
from poms.models import Role
from sam_adapter import query as q
from sam_adapter.interface import DataHandlerError
from submissions.datasets import config_of_submission, handler_of, outputs_of

from .models import FollowUp
from .recovery import _log_workflow
from .services import LaunchError, LaunchHeld, LaunchUnavailable, launch_stage

log = logging.getLogger(__name__)


def dependency_dataset_name(sub, index):
    """POMS's names: analysis users may only create datasets carrying their name."""
    if sub.creator_role == Role.ANALYSIS:
        return f"poms_{sub.launcher.username}_depends_{sub.pk}_{index}"
    return f"poms_depends_{sub.pk}_{index}"


def dependency_dataset(sub, index, pattern, handler):
    """Name (and, when POMS would, define) the dataset of `sub`'s outputs for one dependency.

    Generator stages and submissions without a project: the job declared the dataset itself.
    Approval / data-transfer stages pass their input on. Otherwise the outputs matching the
    pattern, and the definition only ever grows, so a recovery's outputs join it later.
    """
    name = dependency_dataset_name(sub, index)
    stage_type = config_of_submission(sub)["stage"].get("stage_type")
    if stage_type in (StageType.APPROVAL, StageType.DATATRANSFER):
        if not sub.dataset:
            return name, None
        wanted = q.Dataset(sub.dataset)  # with or without a project: the input goes on
    elif stage_type == StageType.GENERATOR or not sub.params.get("project"):
        return name, None
    else:
        wanted = outputs_of(sub, pattern)
    new_count = handler.count(wanted)
    old_count = handler.count(q.Dataset(name)) if handler.definition_exists(name) else -1
    if new_count > old_count:
        handler.define(name, wanted)
    return name, wanted


def launch_dependents(sub, actor):
    """Launch every downstream stage of `sub`'s stage; returns the new submissions."""
    source = sub.recovery_parent or sub
    handler = handler_of(source)
    launched, unavailable = [], None
    index = 0
    for dep in (
        StageDependency.objects.filter(upstream=source.stage_id).select_related("downstream").order_by("downstream_id")
    ):
        try:
            if dep.downstream_id == dep.upstream_id:
                # A self-dependency relaunches the stage on its next split.
                new = _launch_once(
                    source, -1, None, None, lambda dep=dep: launch_stage(dep.downstream, actor=actor, test=source.test)
                )
            else:
                index += 1
                name, wanted = dependency_dataset(source, index, dep.file_pattern, handler)
                entry = {"name": name, "stage": dep.downstream.name, "at": timezone.now().isoformat(),
                         "query": q.to_json(wanted) if wanted is not None else None}  # fmt: skip

                def go(name=name, dep=dep):
                    return launch_stage(dep.downstream, actor=actor, dataset=name, test=source.test)

                new = _launch_once(source, index, name, entry, go)
        except (DataHandlerError, LaunchUnavailable) as exc:  # the catalogue may answer later: the caller retries
            unavailable = unavailable or exc
            continue
        except (LaunchError, PermissionDenied) as exc:  # refused for good (no more splits, a bad template, a role)
            log.warning("dependent %s of submission %s not launched: %s", dep.downstream.name, source.pk, exc)
            continue
        if new is not None:
            launched.append(new)
    if unavailable is not None:
        # The others are launched and guarded by FollowUp; a retry launches only the missing ones.
        raise unavailable if isinstance(unavailable, DataHandlerError) else DataHandlerError(str(unavailable))
    return launched


def _launch_once(source, index, name, entry, go):
    """Launch unless this dependency was already launched for `source` (FollowUp constraint)."""
    try:
        with transaction.atomic():
            follow = FollowUp.objects.create(
                submission=source, kind=FollowUp.DEPENDENT, position=index + 1, dataset=name or ""
            )
            if entry is not None:
                _log_workflow(source.pk, "dependencies", entry)
            try:
                new = go()
            except LaunchHeld:
                return None  # queued behind a hold, committed with this block
            follow.launched = new
            follow.save(update_fields=["launched"])
            return new
    except IntegrityError:
        return None
