"""Changing a stage's split cursor by hand (POMS reset_campaign_split / update_campaign_split).

Reset (NULL: the next launch takes the first split), set a custom value, or restore the cursor an
earlier launch started from — only from a launch made with the same split type, since a cursor
means something different to each type (an index, a run, a unix time, a snapshot id). Each
change takes the stage's row lock, so it never interleaves with a launch taking a split.
"""

import logging
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db import transaction

from campaigns.models import Stage
from poms.permissions import allowed
from submissions.models import Submission

from . import canonical

log = logging.getLogger(__name__)
MAX_CURSOR = 2**63 - 1  # the column is a BigInteger


class CursorError(Exception):
    """A cursor change that cannot be made; the message is shown to the user."""


@dataclass(frozen=True)
class Choice:
    """An earlier launch whose starting cursor can be restored."""

    submission: Submission
    cursor: int | None


def _require_modify(stage, actor):
    if not allowed(actor, "modify", creator_id=stage.creator_id, creator_role=stage.creator_role):
        raise PermissionDenied(f"Your acting role ({actor.role}) may not change the split cursor of {stage}.")


def _store(stage, cursor, actor, why):
    with transaction.atomic():
        previous = Stage.objects.select_for_update().values_list("split_cursor", flat=True).get(pk=stage.pk)
        Stage.objects.filter(pk=stage.pk).update(split_cursor=cursor)
    stage.split_cursor = cursor
    log.info(
        "split cursor of stage=%s %s: %s → %s by=%s", stage.pk, why, previous, cursor, actor.user.username
    )  # fmt: skip
    return cursor


def reset_cursor(stage, *, actor):
    _require_modify(stage, actor)
    return _store(stage, None, actor, "reset")


def set_cursor(stage, value, *, actor):
    _require_modify(stage, actor)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CURSOR:
        raise CursorError(f"A split cursor is a whole number from 0 to {MAX_CURSOR}, not {value!r}.")
    return _store(stage, value, actor, "set")


def restore_cursor(stage, submission, *, actor):
    """Put the cursor back where it was before `submission` launched: the next launch redoes its split."""
    _require_modify(stage, actor)
    return _store(stage, cursor_of(stage, submission), actor, f"restored from submission {submission.pk}")


def split_used(submission):
    """The split spec a submission's launch used, from its config snapshot."""
    frozen = (submission.snapshot.content if submission.snapshot_id else {}).get("stage", {})
    if submission.test and (frozen.get("test_split_type") or "").strip():
        return frozen["test_split_type"]
    return frozen.get("split_type", "")


def cursor_of(stage, submission):
    if submission.stage_id != stage.pk:
        raise CursorError(f"Submission {submission.pk} is not a launch of {stage}.")
    if "split_cursor" not in submission.params:
        raise CursorError(f"Submission {submission.pk} was given its dataset explicitly; it took no split.")
    used = split_used(submission)
    if canonical(used) != canonical(stage.split_type):
        raise CursorError(
            f"Submission {submission.pk} was launched with split type {used or 'None'}, not {stage.split_type}; "
            f"its cursor would mean something else."
        )
    return submission.params["split_cursor"]


def restore_choices(stage, limit=20):
    """The stage's recent launches made by its current split type, newest first."""
    recent = (
        Submission.objects.filter(stage=stage, params__has_key="split_cursor")
        .select_related("snapshot")
        .only("id", "stage_id", "created", "params", "test", "snapshot__content")
        .order_by("-id")[:limit]
    )
    wanted = canonical(stage.split_type)
    return [Choice(s, s.params["split_cursor"]) for s in recent if canonical(split_used(s)) == wanted]
