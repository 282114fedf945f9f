"""Every list page makes the same number of queries with 1 row as with 50 (DESIGN §4 "Look")."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from campaigns.models import StageDependency
from launches.models import HeldLaunch
from submissions.models import Status
from tests.factories import CampaignFactory, JobFactory, StageFactory, SubmissionFactory, TagFactory

pytestmark = pytest.mark.django_db


def queries(client, url):
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(ctx.captured_queries)


def grow(world, kind, n):
    stage = world.production_stage
    if kind == "campaigns":
        for _ in range(n):
            campaign = CampaignFactory(experiment=world.experiment, creator=world.users["production"])
            campaign.tags.add(TagFactory(experiment=world.experiment, creator=world.users["production"]))
    elif kind == "submissions":
        SubmissionFactory.create_batch(n, stage=stage, status=Status.FAILED)
    elif kind == "stages":
        for _ in range(n):
            downstream = StageFactory(
                experiment=world.experiment, campaign=stage.campaign, creator=stage.creator,
                job_type=stage.job_type, login_setup=stage.login_setup,
            )  # fmt: skip
            StageDependency.objects.create(upstream=stage, downstream=downstream)
            SubmissionFactory(stage=downstream, files_total=10, files_consumed=5)
    elif kind == "held":
        for _ in range(n):
            HeldLaunch.objects.create(stage=stage, launcher=world.users["production"], launcher_role="production")
    elif kind == "jobs":
        sub = stage.submissions.first() or SubmissionFactory(stage=stage)
        JobFactory.create_batch(n, submission=sub)


PAGES = {
    "campaigns": lambda world: reverse("campaigns:list"),
    "submissions": lambda world: reverse("submissions:stage_table", args=[world.production_stage.pk]),
    "jobs": lambda world: reverse("submissions:detail", args=[_first_sub(world)]),
    "dashboard": lambda world: reverse("submissions:dashboard"),
    "queued launches": lambda world: reverse("launches:held"),
    "campaign overview": lambda world: reverse("campaigns:detail", args=[world.production_stage.campaign_id]),
    "campaign status": lambda world: reverse("submissions:campaign_status", args=[world.production_stage.campaign_id]),
}
GROWS = {
    "campaigns": "campaigns",
    "submissions": "submissions",
    "jobs": "jobs",
    "dashboard": "submissions",
    "queued launches": "held",
    "campaign overview": "stages",
    "campaign status": "stages",
}


def _first_sub(world):
    sub = world.production_stage.submissions.first() or SubmissionFactory(stage=world.production_stage)
    return sub.pk


@pytest.mark.parametrize("page", PAGES)
def test_the_page_makes_a_constant_number_of_queries(world, page):
    client = world.client("production")
    grow(world, GROWS[page], 1)
    one = queries(client, PAGES[page](world))
    grow(world, GROWS[page], 49)
    fifty = queries(client, PAGES[page](world))
    assert one == fifty, f"{page}: {one} queries with 1 row, {fifty} with 50"


def test_big_lists_paginate_by_key(world, settings):
    settings.POMS_PAGE_SIZE = 10
    subs = SubmissionFactory.create_batch(25, stage=world.production_stage)
    client = world.client("production")
    url = reverse("submissions:stage_table", args=[world.production_stage.pk])
    first = client.get(url).content.decode()
    newest = max(s.pk for s in subs)
    assert f'id="submission-{newest}"' in first and f"before={newest - 9}" in first
    second = client.get(url, {"before": newest - 9}).content.decode()
    assert f'id="submission-{newest - 10}"' in second and f'id="submission-{newest - 9}"' not in second
