"""The split cursor box on the stage page: show it, reset it, set it, restore it from a launch."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from campaigns.access import get_stage_for
from poms.permissions import allowed, request_actor
from submissions.models import Submission

from .splits import SplitError, describe, parse
from .splits import cursor as split_cursor


class SetCursorForm(forms.Form):
    value = forms.IntegerField(min_value=0, max_value=split_cursor.MAX_CURSOR)


class RestoreCursorForm(forms.Form):
    submission = forms.IntegerField(min_value=1)


@login_required
def cursor_box(request, pk):
    """The partial itself (the stage page loads it with htmx)."""
    stage = get_stage_for(request, pk)
    actor = request_actor(request, stage.experiment)
    context = {
        "stage": stage,
        "can_modify": allowed(actor, "modify", creator_id=stage.creator_id, creator_role=stage.creator_role),
        "restore_choices": split_cursor.restore_choices(stage),
        "split_types": describe(),
    }
    try:
        context["split"] = parse(stage.split_type)[0]
    except SplitError as exc:
        context["split_error"] = str(exc)
    return render(request, "launches/_split_cursor.html", context)


@login_required
@require_POST
def reset_cursor(request, pk):
    stage = get_stage_for(request, pk, need="modify")
    split_cursor.reset_cursor(stage, actor=request_actor(request, stage.experiment))
    messages.success(request, f"Split cursor of {stage.name} reset: the next launch takes the first split.")
    return redirect("campaigns:stage", pk=stage.pk)


@login_required
@require_POST
def set_cursor(request, pk):
    stage = get_stage_for(request, pk, need="modify")
    form = SetCursorForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Split cursor not changed: {' '.join(form.errors.get('value', ['bad value']))}")
        return redirect("campaigns:stage", pk=stage.pk)
    value = split_cursor.set_cursor(stage, form.cleaned_data["value"], actor=request_actor(request, stage.experiment))
    messages.success(request, f"Split cursor of {stage.name} set to {value}.")
    return redirect("campaigns:stage", pk=stage.pk)


@login_required
@require_POST
def restore_cursor(request, pk):
    stage = get_stage_for(request, pk, need="modify")
    form = RestoreCursorForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Split cursor not changed: pick a submission.")
        return redirect("campaigns:stage", pk=stage.pk)
    sub = get_object_or_404(Submission.objects.select_related("snapshot"), pk=form.cleaned_data["submission"])
    try:
        value = split_cursor.restore_cursor(stage, sub, actor=request_actor(request, stage.experiment))
    except split_cursor.CursorError as exc:
        messages.error(request, str(exc))
    else:
        shown = "unset" if value is None else value
        messages.success(request, f"Split cursor of {stage.name} restored to {shown}, as before submission {sub.pk}.")
    return redirect("campaigns:stage", pk=stage.pk)


# Included by launches/urls.py (app namespace "launches").
urlpatterns = [
    path("stages/<int:pk>/split-cursor/", cursor_box, name="split_cursor"),
    path("stages/<int:pk>/split-cursor/reset/", reset_cursor, name="split_cursor_reset"),
    path("stages/<int:pk>/split-cursor/set/", set_cursor, name="split_cursor_set"),
    path("stages/<int:pk>/split-cursor/restore/", restore_cursor, name="split_cursor_restore"),
]
