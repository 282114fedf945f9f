"""A shifter's day in one test: log in, open the stage, launch, watch it complete."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect

from campaigns.models import StageDependency
from tests.factories import StageFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
SHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"


def test_launch_from_the_stage_page_reaches_completed(world, live_server, page, beat):
    stage = world.production_stage
    downstream = StageFactory(
        experiment=world.experiment, campaign=stage.campaign, creator=stage.creator, name="reco",
        job_type=stage.job_type, login_setup=stage.login_setup,
    )  # fmt: skip
    StageDependency.objects.create(upstream=stage, downstream=downstream)

    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", "production")
    page.fill("input[name=password]", "pw")
    page.click("button.primary")
    expect(page.locator("h1")).to_contain_text("nova")

    page.goto(f"{live_server.url}/stages/{stage.pk}/")
    expect(page.locator("#stage-submissions")).to_contain_text("Never launched")
    page.click("#launch")
    expect(page.locator(".flash")).to_contain_text("launching now")
    # No reload from here on: htmx refreshes the table until the jobs are done.
    badge = page.locator("#stage-submissions .badge[data-status]").first
    expect(badge).to_have_text("Completed", timeout=60_000)

    page.locator("#stage-submissions tbody a").first.click()
    expect(page.locator("#submission-status")).to_have_text("Completed")
    expect(page.locator("#history")).to_contain_text("Running")
    expect(page.locator("table.jobs tbody tr")).to_have_count(2)
    expect(page.locator("#launch-log")).to_contain_text(re.compile(r"Submitted local cluster \d+"))

    page.goto(f"{live_server.url}/campaigns/{stage.campaign_id}/")
    expect(page.locator(f"#latest-{stage.pk}")).to_contain_text("Completed")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "campaign-overview.png"))
