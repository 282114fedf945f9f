"""Access helpers: the only way views obtain campaigns and stages (DESIGN §8)."""

from django.shortcuts import get_object_or_404

from poms.permissions import check

from .models import Campaign, Stage


def get_campaign_for(request, pk, need="view"):
    campaign = get_object_or_404(Campaign.objects.select_related("experiment"), pk=pk)
    check(request, campaign, need, kind="campaign")
    return campaign


def get_stage_for(request, pk, need="view"):
    stage = get_object_or_404(
        Stage.objects.select_related("experiment", "campaign", "job_type", "login_setup", "creator"), pk=pk
    )
    check(request, stage, need, kind="stage")
    return stage
