"""Pages that show configuration. Ledger data (submissions) loads into them from the
submissions room through htmx partials, so imports keep flowing one way."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render

from poms.header import acting
from poms.lib.paging import keyset_asc

from .access import get_campaign_for, get_stage_for
from .forms import CampaignFilterForm
from .models import Campaign, StageDependency


@login_required
def campaign_list(request):
    actor = acting(request)
    if actor.role is None:
        raise PermissionDenied("Pick an experiment you are a member of.")
    form = CampaignFilterForm(request.GET)
    form.is_valid()
    campaigns = form.filter(
        Campaign.objects.for_list().with_progress().filter(experiment=actor.experiment), request.user
    )
    page = keyset_asc(campaigns, form.cleaned_data.get("after") or None, settings.POMS_PAGE_SIZE, field="name")
    return render(request, "campaigns/campaign_list.html", {"form": form, "page": page})


@login_required
def campaign_detail(request, pk):
    campaign = get_campaign_for(request, pk)
    stages = list(campaign.stages.select_related("job_type", "hold_by").order_by("name"))
    edges = StageDependency.objects.filter(downstream__campaign=campaign).values_list("upstream_id", "downstream_id")
    graph = {
        "nodes": [{"id": s.id, "name": s.name, "type": s.stage_type} for s in stages],
        "edges": [{"source": u, "target": d} for u, d in edges],
    }
    return render(request, "campaigns/campaign_detail.html", {"campaign": campaign, "stages": stages, "graph": graph})


@login_required
def stage_detail(request, pk):
    stage = get_stage_for(request, pk)
    upstream = [d.upstream for d in stage.upstream_links.select_related("upstream")]
    return render(
        request,
        "campaigns/stage_detail.html",
        {"stage": stage, "upstream": upstream},
    )
