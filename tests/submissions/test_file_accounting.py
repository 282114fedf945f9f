"""File accounting per submission (POMS file statistics) and progress per stage and campaign."""

import pytest
from django.urls import reverse

from launches import wrapup as workflow
from sam_adapter import query as q
from sam_adapter.models import CatalogFile
from submissions.models import Status, Submission
from tests.factories import SubmissionFactory, processed_submission

pytestmark = pytest.mark.django_db


def test_every_number_is_counted_and_links_to_its_files(world, chain):
    sim, _, cat = chain
    sub = processed_submission(world, sim, cat, "gen_out", consume={"gen_0.root", "gen_1.root", "gen_2.root"})
    CatalogFile.objects.filter(name=f"{sim.name}_gen_2.root").update(location="")  # declared, not located
    client = world.client("analysis")
    html = client.get(reverse("submissions:files", args=[sub.pk])).content.decode()
    expected = {
        "Submitted": 4, "Delivered": 4, "Consumed": 3, "Failed": 1, "Skipped": 0, "Unknown": 0,
        "With some kids declared": 3, "With all kids declared": 3, "With kids located": 2, "Pending": 2,
        "Available output": 2,
    }  # fmt: skip
    for label, n in expected.items():
        cell = f'<a href="{reverse("submissions:file_list", args=[sub.pk, label])}">{n}</a>' if n else "<td>0</td>"
        assert f"<th>{label}</th>" in html and cell in html, label
    pending = client.get(reverse("submissions:file_list", args=[sub.pk, "Pending"])).content.decode()
    assert "gen_2.root" in pending and "gen_3.root" in pending and "gen_0.root" not in pending


def test_an_unavailable_catalogue_says_why(world, settings):
    settings.POMS_DATA_HANDLER = "nonsense"
    sub = SubmissionFactory(stage=world.production_stage, params={"project": "p"})
    html = world.client("production").get(reverse("submissions:files", args=[sub.pk])).content.decode()
    assert "File counts unavailable: unknown data handling backend" in html


def test_progress_on_the_overview_and_the_campaign_list(world, chain):
    sim, _, cat = chain
    processed_submission(world, sim, cat, "gen_out", consume={"gen_0.root"})
    workflow.wrapup()
    status = world.client("production").get(reverse("submissions:campaign_status", args=[sim.campaign_id])).json()
    row = status["stages"][str(sim.pk)]
    assert (row["files_total"], row["files_consumed"]) == (4, 1)
    page = world.client("production").get(reverse("campaigns:list")).content.decode()
    assert 'title="1 of 4 files"' in page and "25 %" in page


def test_manual_recovery_and_kicks_through_the_page(world, chain):
    sim, _, cat = chain
    sub = processed_submission(world, sim, cat, "gen_out", consume={"gen_0.root"})
    Submission.objects.filter(pk=sub.pk).update(status=Status.FAILED)
    client = world.client("production-shifter")
    client.post(reverse("launches:recover", args=[sub.pk]), {"recovery_type": "consumed_status"})
    recovery = Submission.objects.get(recovery_parent=sub)
    assert cat.count(q.Dataset(recovery.dataset)) == 3
    client.post(reverse("launches:kick", args=[sub.pk, "completed"]))
    sub.refresh_from_db()
    assert sub.status == Status.COMPLETED
    assert world.client("analysis").post(reverse("launches:kick", args=[sub.pk, "located"])).status_code == 403
