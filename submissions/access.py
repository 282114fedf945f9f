"""Access helpers for the ledger (DESIGN §8)."""

from django.shortcuts import get_object_or_404

from poms.permissions import check

from .models import Job, Submission


def get_submission_for(request, pk, need="view"):
    sub = get_object_or_404(
        Submission.objects.select_related("experiment", "stage", "stage__campaign", "launcher", "snapshot"), pk=pk
    )
    check(request, sub, need, kind="submission")
    return sub


def get_job_for(request, pk, need="view"):
    job = get_object_or_404(Job.objects.select_related("submission", "submission__experiment"), pk=pk)
    check(request, job.submission, need, kind="job")
    return job
