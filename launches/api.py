"""The callback API for launch wrappers and scripts, POMS-compatible (reference/poms.md §3.12–13).

Authenticated only by a bearer token — the per-submission token a launch receives as
POMS_SUBMISSION_TOKEN, or a personal API token — never by a session cookie, so these
endpoints need no CSRF token and a GET from a foreign page can do nothing.
"""

import re

from django import forms
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from campaigns.models import Stage
from poms.permissions import allowed, token_actor
from poms.tokens import caller
from submissions import services as ledger
from submissions.models import Status, Submission

from .services import require

STATUS_BY_NAME = {s.label.lower().replace(" ", ""): s for s in Status}


def _status(value):
    """A status given by name (Running, "Awaiting Approval") or number (4000)."""
    if value.isascii() and value.isdigit() and int(value) in Status.values:
        return Status(int(value))
    found = STATUS_BY_NAME.get(value.lower().replace(" ", ""))
    if found is None:
        raise forms.ValidationError(f"unknown status {value!r}")
    return found


# Located starts the recoveries and dependents, Awaiting Approval waits for a person: only
# POMS itself (wrapup, a launch of an approval stage) moves a submission there.
NOT_REPORTABLE = (Status.LOCATED, Status.AWAITING_APPROVAL)


class UpdateForm(forms.Form):
    submission_id = forms.IntegerField(min_value=1)
    jobsub_job_id = forms.CharField(max_length=200, required=False)
    status = forms.CharField(max_length=40, required=False)
    project = forms.CharField(max_length=200, required=False)

    def clean_status(self):
        value = self.cleaned_data["status"].strip()
        status = _status(value) if value else None
        if status in NOT_REPORTABLE:
            raise forms.ValidationError(f"{Status(status).label} is POMS's to decide (wrapup, approvals), not a job's")
        return status

    def clean_jobsub_job_id(self):
        # POMS stores <cluster>@<schedd>: the wrapper reports <cluster>.0@<schedd>.
        return re.sub(r"\.0@", "@", self.cleaned_data["jobsub_job_id"].strip())


def _errors(form):
    """The form's errors as plain text (as_text() escapes them for HTML)."""
    return "; ".join(f"{field}: {' '.join(map(str, errors))}" for field, errors in form.errors.items())


def _text(message, status=200):
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


@csrf_exempt
@require_http_methods(["GET", "POST"])
def update_submission(request):
    """Report a submission's job id, status or SAM project (POMS `update_submission`)."""
    form = UpdateForm(request.POST if request.method == "POST" else request.GET)
    if not form.is_valid():
        return _text(f"Bad request: {_errors(form)}", 400)
    # Who asks first: without a token nobody learns which submission ids exist.
    who = caller(request)
    if who is None or (who.submission_id is not None and who.submission_id != form.cleaned_data["submission_id"]):
        return _text(
            "Unauthorized: send Authorization: Bearer <token> (a callback token works for its own submission)", 401
        )
    sub = get_object_or_404(Submission.objects.select_related("experiment"), pk=form.cleaned_data["submission_id"])
    user = who.user
    actor = token_actor(user, sub.experiment)
    if who.submission_id is None and actor.role is None:
        raise Http404  # not a member: not told the submission exists
    if who.submission_id is None and not allowed(
        actor, "act", creator_id=sub.creator_id, creator_role=sub.creator_role
    ):
        return _text(f"Forbidden: {user.username} may not update submission {sub.pk}", 403)
    data = form.cleaned_data
    with transaction.atomic():
        locked = Submission.objects.select_for_update().get(pk=sub.pk)
        fields = {}
        if data["jobsub_job_id"] and data["jobsub_job_id"] != locked.batch_id:
            # Hold, release and kill act on a submission's batch id: a caller may name its jobs once,
            # never re-point a submission at jobs it does not own.
            if locked.batch_id:
                return _text(f"Conflict: submission {sub.pk} already has batch id {locked.batch_id}", 409)
            taken = Submission.objects.filter(batch_system=locked.batch_system, batch_id=data["jobsub_job_id"])
            if taken.exists():
                return _text(f"Conflict: batch id {data['jobsub_job_id']} belongs to another submission", 409)
            fields["batch_id"] = data["jobsub_job_id"]
        if data["project"]:
            fields["params"] = {**locked.params, "project": data["project"]}
        if fields:
            ledger.save_launch_record(sub.pk, **fields)
    if data["status"] is not None and data["status"] != Status.NEW:
        ledger.set_status(sub.pk, data["status"], cause=f"reported by {user.username} via update_submission")
    return _text("Ok.")


class RegisterForm(forms.Form):
    campaign_stage_id = forms.IntegerField(min_value=1)
    submission_id = forms.IntegerField(min_value=1, required=False)
    command_executed = forms.CharField(max_length=10000, required=False)
    input_dataset = forms.CharField(max_length=2000, required=False)
    parent_submission_id = forms.IntegerField(min_value=1, required=False)
    project = forms.CharField(max_length=200, required=False)


@csrf_exempt
@require_http_methods(["POST"])
def get_submission_id_for(request):
    """Register an externally launched submission, or record what an existing one ran.

    Answers `Task=<id>` as POMS does. Needs a personal token allowed to act on the stage.
    """
    form = RegisterForm(request.POST)
    if not form.is_valid():
        return _text(f"Bad request: {_errors(form)}", 400)
    data = form.cleaned_data
    stage = get_object_or_404(Stage.objects.select_related("experiment", "job_type"), pk=data["campaign_stage_id"])
    who = caller(request)
    if who is None or who.submission_id is not None:
        return _text("Unauthorized: send Authorization: Bearer <personal token>", 401)
    user = who.user
    actor = token_actor(user, stage.experiment)
    try:
        require(actor, stage, "act")
    except PermissionDenied as exc:
        return _text(f"Forbidden: {exc}", 403)
    if data["submission_id"]:
        sub = get_object_or_404(Submission, pk=data["submission_id"], stage=stage)
        fields = {"command": data["command_executed"]} if data["command_executed"] else {}
        if data["project"]:
            fields["params"] = {**sub.params, "project": data["project"]}
        ledger.save_launch_record(sub.pk, **fields)
        return _text(f"Task={sub.pk}")
    parent = None
    if data["parent_submission_id"]:
        parent = get_object_or_404(Submission, pk=data["parent_submission_id"], stage__experiment=stage.experiment)
    with transaction.atomic():
        sub = ledger.create_submission(
            stage=stage, launcher=user, role=stage.creator_role, snapshot=None, test=stage.campaign.is_test,
            batch_system=stage.job_type.batch_system, parent=parent,
            params={"dataset": data["input_dataset"], "external": True, "project": data["project"]},
        )  # fmt: skip
        # Nothing for a worker to run: the launch already happened outside POMS.
        ledger.save_launch_record(sub.pk, command=data["command_executed"], launch_started=timezone.now())
    return _text(f"Task={sub.pk}")
