"""Views that act: launch, dry run, hold / release / kill / relaunch (DESIGN §3)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from campaigns.access import get_stage_for
from poms.permissions import request_actor
from submissions.access import get_submission_for

from . import services
from .forms import LaunchForm

CONFIRM = {
    "hold": ("Hold", "Hold every job of this submission? Running jobs are suspended until released.", False),
    "release": ("Release", "Release the held jobs of this submission?", False),
    "kill": ("Kill", "Kill every job of this submission? It becomes Removed; this cannot be undone.", True),
    "relaunch": ("Relaunch", "Launch this stage again on the same dataset?", False),
}


@login_required
@require_POST
def launch(request, pk):
    stage = get_stage_for(request, pk, need="act")
    form = LaunchForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest("bad launch request")
    try:
        sub = services.launch_stage(
            stage, actor=request_actor(request, stage.experiment), dataset=form.dataset_override(),
            test=form.cleaned_data["test"],
        )  # fmt: skip
    except services.LaunchError as exc:
        messages.error(request, str(exc))
        return redirect("campaigns:stage", pk=stage.pk)
    messages.success(request, f"Submission {sub.pk} created{' (test)' if sub.test else ''}; launching now.")
    return redirect("campaigns:stage", pk=stage.pk)


@login_required
def dry_run(request, pk):
    stage = get_stage_for(request, pk, need="act")
    form = LaunchForm(request.GET)
    form.is_valid()
    context = {"stage": stage, "test": form.cleaned_data.get("test", False)}
    try:
        context["plan"] = services.dry_run(
            stage, actor=request_actor(request, stage.experiment), dataset=form.dataset_override(), test=context["test"]
        )
    except services.LaunchError as exc:
        context["error"] = str(exc)
    return render(request, "launches/dry_run.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def submission_action(request, pk, action):
    if action not in CONFIRM:
        return HttpResponseBadRequest("unknown action")
    sub = get_submission_for(request, pk, need="act")
    if request.method == "GET":
        label, question, destructive = CONFIRM[action]
        context = {"sub": sub, "action": action, "label": label, "question": question, "destructive": destructive}
        return render(request, "launches/confirm.html", context)
    actor = request_actor(request, sub.experiment)
    try:
        if action == "relaunch":
            new = services.relaunch(sub, actor=actor)
            messages.success(request, f"Relaunched as submission {new.pk}.")
            return redirect("submissions:detail", pk=new.pk)
        services.control_submission(sub, action, actor=actor)
        messages.success(request, f"{CONFIRM[action][0]} sent for submission {sub.pk}.")
    except services.LaunchError as exc:
        messages.error(request, str(exc))
    return redirect("submissions:detail", pk=sub.pk)
