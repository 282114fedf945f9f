"""Views that act: launch, dry run, hold / release / kill / cancel, approvals, launch holds."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from campaigns.access import get_campaign_for, get_stage_for
from campaigns.models import RecoveryType
from poms.header import acting
from poms.permissions import request_actor
from sam_adapter.interface import DataHandlerError
from submissions.access import get_job_for, get_submission_for
from submissions.models import Status

from . import batch, control, recovery, services
from . import wrapup as workflow
from .forms import LaunchForm
from .models import HeldLaunch, LaunchHold

QUESTIONS = {
    "hold": ("Hold", "Hold every job? Running jobs are suspended until released.", False),
    "release": ("Release", "Release every held job?", False),
    "kill": ("Kill", "Kill every job? The submissions become Removed; this cannot be undone.", True),
    "cancel": ("Cancel", "Cancel every job? The submissions become Cancelled; this cannot be undone.", True),
    "relaunch": ("Relaunch", "Launch this stage again on the same dataset?", False),
}
SCOPES = {
    "submission": (get_submission_for, "submissions:detail"),
    "stage": (get_stage_for, "campaigns:stage"),
    "campaign": (get_campaign_for, "campaigns:detail"),
}


def _launched(request, back, call):
    """Run a launch call; a held launch answers 423 with a page that says so."""
    try:
        sub = call()
    except services.LaunchHeld as held:
        return render(request, "launches/held.html", {"held": held.held}, status=423)
    except services.LaunchError as exc:
        messages.error(request, str(exc))
        return redirect(back)
    messages.success(request, f"Submission {sub.pk} created{' (test)' if sub.test else ''}; launching now.")
    return redirect("campaigns:stage", pk=sub.stage_id)


@login_required
@require_POST
def launch(request, pk):
    stage = get_stage_for(request, pk, need="act")
    form = LaunchForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest("bad launch request")
    actor = request_actor(request, stage.experiment)
    return _launched(
        request,
        reverse("campaigns:stage", args=[stage.pk]),
        lambda: services.launch_stage(
            stage, actor=actor, dataset=form.dataset_override(), test=form.cleaned_data["test"]
        ),
    )


@login_required
@require_POST
def launch_campaign(request, pk):
    campaign = get_campaign_for(request, pk, need="act")
    form = LaunchForm(request.POST)
    form.is_valid()
    actor = request_actor(request, campaign.experiment)
    test = form.cleaned_data.get("test", False)
    back = reverse("campaigns:detail", args=[campaign.pk])
    return _launched(request, back, lambda: control.launch_campaign(campaign, actor=actor, test=test))


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
def scope_action(request, scope, pk, action):
    """Hold / release / kill / cancel at submission, stage or campaign scope; GET confirms."""
    if scope not in SCOPES or action not in control.ACTIONS:
        raise Http404
    getter, back = SCOPES[scope]
    obj = getter(request, pk, need="act")
    affected = control.affected(scope, obj)
    if request.method == "GET":
        label, question, destructive = QUESTIONS[action]
        context = {"obj": obj, "scope": scope, "label": label, "question": question, "destructive": destructive}
        # The page lists at most 500; the count is of everything the action will reach.
        return render(
            request, "launches/confirm.html", context | {"affected": list(affected[:500]), "reach": affected.count()}
        )
    try:
        n = control.control(affected, action, actor=request_actor(request, obj.experiment))
        messages.success(request, f"{QUESTIONS[action][0]} sent to {n} submission{'s' if n != 1 else ''}.")
    except services.LaunchError as exc:
        messages.error(request, str(exc))
    return redirect(back, pk=obj.pk)


@login_required
@require_http_methods(["GET", "POST"])
def relaunch(request, pk):
    sub = get_submission_for(request, pk, need="act")
    if request.method == "GET":
        label, question, _ = QUESTIONS["relaunch"]
        context = {"obj": sub, "scope": "submission", "label": label, "question": question, "affected": [sub]}
        return render(request, "launches/confirm.html", context)
    actor = request_actor(request, sub.experiment)
    back = reverse("submissions:detail", args=[sub.pk])
    return _launched(request, back, lambda: services.relaunch(sub, actor=actor))


@login_required
@require_POST
def approval(request, pk, decision):
    sub = get_submission_for(request, pk, need="act")
    if decision not in ("approve", "reject"):
        raise Http404
    try:
        control.decide_approval(sub, decision == "approve", actor=request_actor(request, sub.experiment))
        messages.success(request, f"Submission {sub.pk} {decision}d.")
    except services.LaunchError as exc:
        messages.error(request, str(exc))
    return redirect("submissions:detail", pk=sub.pk)


class StageHoldForm(forms.Form):
    mode = forms.ChoiceField(choices=[("hold", "Hold"), ("queue", "Queue"), ("release", "Release")])
    stages = forms.TypedMultipleChoiceField(coerce=int, choices=())

    def __init__(self, *args, campaign, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["stages"].choices = [(s.pk, s.name) for s in campaign.stages.all()]


@login_required
@require_POST
def stage_holds(request, pk):
    """Bulk Hold / Queue / Release on the campaign's stages table."""
    campaign = get_campaign_for(request, pk)
    form = StageHoldForm(request.POST, campaign=campaign)
    if not form.is_valid():
        messages.error(request, "Pick at least one stage and Hold, Queue or Release.")
        return redirect("campaigns:detail", pk=campaign.pk)
    stages = [get_stage_for(request, sid, need="act") for sid in form.cleaned_data["stages"]]
    mode = form.cleaned_data["mode"]
    try:
        launched = control.set_stage_hold(stages, mode, actor=request_actor(request, campaign.experiment))
    except services.LaunchError as exc:
        messages.error(request, str(exc))
        return redirect("campaigns:detail", pk=campaign.pk)
    done = {"hold": "held (launches queued, jobs held)", "queue": "queuing launches", "release": "released"}[mode]
    extra = f"; {len(launched)} queued launch(es) started" if launched else ""
    messages.success(request, f"{', '.join(s.name for s in stages)}: {done}{extra}.")
    return redirect("campaigns:detail", pk=campaign.pk)


@login_required
def held_launches(request):
    actor = acting(request)
    if actor.role is None:
        raise PermissionDenied("Pick an experiment you are a member of.")
    context = {
        "queued": list(control.visible_held_launches(actor, actor.experiment)[:500]),
        "hold": LaunchHold.objects.filter(experiment=actor.experiment).select_related("held_by").first(),
        "global_hold": LaunchHold.objects.filter(experiment=None).select_related("held_by").first(),
        "can_switch": actor.is_root or actor.role == "superuser",
        "actor": actor,
    }
    return render(request, "launches/held_launches.html", context)


@login_required
@require_POST
def delete_held_launch(request, pk):
    held = get_object_or_404(HeldLaunch.objects.select_related("stage", "stage__experiment"), pk=pk)
    control.delete_held_launch(held, actor=request_actor(request, held.stage.experiment))
    messages.success(request, f"Queued launch of {held.stage} deleted.")
    return redirect("launches:held")


@login_required
@require_POST
def switch_launches(request, mode):
    """The "launches held" switch: the experiment's (its superusers), or everywhere (root, scope=all)."""
    actor = acting(request)
    everywhere = request.POST.get("scope") == "all"
    if not everywhere and actor.experiment is None and actor.is_root:  # others are refused below
        messages.error(request, "Pick an experiment in the header first (or hold launches in every experiment).")
        return redirect("launches:held")
    experiment = None if everywhere else actor.experiment
    where = "every experiment" if everywhere else str(actor.experiment)
    if mode == "hold":
        control.hold_launches(experiment, actor=actor)
        messages.success(request, f"All launches in {where} are now queued.")
    elif mode == "release":
        launched = control.release_launches(experiment, actor=actor)
        messages.success(request, f"Launches in {where} allowed again; {len(launched)} queued launch(es) started.")
    else:
        raise Http404
    return redirect("launches:held")


@login_required
@require_POST
def abort_launch(request, pk):
    sub = get_submission_for(request, pk, need="act")
    try:
        services.abort_launch(sub, actor=request_actor(request, sub.experiment))
        messages.success(request, f"Abort requested: the launch of submission {sub.pk} is being killed.")
    except services.LaunchError as exc:
        messages.error(request, str(exc))
    return redirect("submissions:detail", pk=sub.pk)


@login_required
@require_POST
def kick(request, pk, target):
    """Kick to Completed / Kick to Located."""
    sub = get_submission_for(request, pk, need="act")
    try:
        workflow.kick(sub, target, actor=request_actor(request, sub.experiment))
        messages.success(request, f"Submission {sub.pk} kicked to {target.capitalize()}.")
    except services.LaunchError as exc:
        messages.error(request, str(exc))
    return redirect("submissions:detail", pk=sub.pk)


class RecoveryForm(forms.Form):
    recovery_type = forms.ChoiceField(choices=RecoveryType.choices)


@login_required
@require_POST
def launch_recovery(request, pk):
    """The manual "Launch recovery" with a type picker (POMS launch_recovery_for)."""
    sub = get_submission_for(request, pk, need="act")
    form = RecoveryForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Pick a recovery type.")
    elif sub.status < Status.FAILED:
        messages.error(request, f"Submission {sub.pk} is still {sub.get_status_display()}: recover it once it ended.")
    else:
        actor = request_actor(request, sub.experiment)
        try:
            launched = recovery.launch_recovery_if_needed(sub, actor, only=form.cleaned_data["recovery_type"])
        except (services.LaunchError, DataHandlerError) as exc:
            messages.error(request, str(exc))
        else:
            if launched:
                messages.success(request, f"{form.cleaned_data['recovery_type']} recovery launched.")
            else:
                messages.info(request, "No recovery needed, launch skipped: no file matches.")
    return redirect("submissions:detail", pk=sub.pk)


@login_required
def job_output(request, pk, stream):
    """A job's stdout or stderr, read or fetched through its batch system (jobsub_fetchlog, …)."""
    job = get_job_for(request, pk)
    if stream not in ("stdout", "stderr"):
        raise Http404
    try:
        text, error = batch.get_backend(job.submission.batch_system).read_output(job, stream), ""
    except batch.BatchError as exc:
        text, error = "", str(exc)
    return render(request, "submissions/job_output.html", {"job": job, "stream": stream, "text": text, "error": error})
