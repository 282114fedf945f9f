"""Submission pages and partials."""

import json
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from submissions.models import Submission
from tests.factories import JobFactory, SubmissionFactory

pytestmark = pytest.mark.django_db


def test_the_launch_log_tails_until_the_launch_ends(world, tmp_path):
    log = tmp_path / "launch.log"
    log.write_text("x" * 70_000 + "\nSubmitted local cluster 3 (2 jobs).\n")
    sub = SubmissionFactory(stage=world.production_stage, launch_log=str(log))
    client = world.client("production-shifter")
    running = client.get(reverse("submissions:log", args=[sub.pk]))
    assert running.status_code == 200
    assert b"Submitted local cluster 3" in running.content and b"earlier output cut" in running.content
    Submission.objects.filter(pk=sub.pk).update(launch_finished=timezone.now())
    assert client.get(reverse("submissions:log", args=[sub.pk])).status_code == 286  # htmx: stop polling


def test_job_output_is_one_click_away(world, tmp_path):
    out, err = tmp_path / "0.out", tmp_path / "0.err"
    out.write_text("hello from the job\n")
    err.write_text("art::Exception\n")
    job = JobFactory(
        submission__stage=world.production_stage, submission__batch_system="slurm",
        stdout_path=str(out), stderr_path=str(err),
    )  # fmt: skip
    client = world.client("analysis")
    detail = client.get(reverse("submissions:detail", args=[job.submission_id])).content.decode()
    assert reverse("launches:job_output", args=[job.pk, "stdout"]) in detail
    assert b"hello from the job" in client.get(reverse("launches:job_output", args=[job.pk, "stdout"])).content
    assert b"art::Exception" in client.get(reverse("launches:job_output", args=[job.pk, "stderr"])).content
    assert client.get(reverse("launches:job_output", args=[job.pk, "environ"])).status_code == 404


def test_job_output_outside_the_output_roots_is_not_served(world, tmp_path, settings):
    secret = tmp_path / "elsewhere" / "poms.env"
    secret.parent.mkdir()
    secret.write_text("DATABASE_PASSWORD=hunter2\n")
    settings.POMS_JOB_OUTPUT_ROOTS = [str(tmp_path / "outputs")]
    job = JobFactory(
        submission__stage=world.production_stage,
        stdout_path=str(tmp_path / "outputs" / ".." / "elsewhere" / "poms.env"),
    )
    page = world.client("production-shifter").get(reverse("launches:job_output", args=[job.pk, "stdout"])).content
    assert b"hunter2" not in page and b"outside the directories job output is served from" in page


def test_each_experiment_reads_job_output_from_its_own_directory_only(world, tmp_path, settings):
    settings.POMS_JOB_OUTPUT_ROOTS = [str(tmp_path / "{experiment}")]
    for exp in ("nova", "dune"):
        (tmp_path / exp).mkdir()
        (tmp_path / exp / "1.out").write_text(f"{exp} output\n")
    own = JobFactory(submission__stage=world.production_stage, submission__batch_system="slurm",
                     stdout_path=str(tmp_path / "nova" / "1.out"))  # fmt: skip
    other = JobFactory(submission__stage=world.production_stage, submission__batch_system="slurm",
                       stdout_path=str(tmp_path / "dune" / "1.out"))  # fmt: skip
    client = world.client("analysis")
    assert b"nova output" in client.get(reverse("launches:job_output", args=[own.pk, "stdout"])).content
    refused = client.get(reverse("launches:job_output", args=[other.pk, "stdout"])).content
    assert b"dune output" not in refused and b"outside the directories" in refused


def test_a_local_job_reads_only_its_own_clusters_files(world, tmp_path, settings):
    elsewhere = settings.POMS_LOCAL_BATCH_ROOT / "clusters" / "8" / "0.out"
    elsewhere.parent.mkdir(parents=True)
    elsewhere.write_text("cluster 8's output\n")
    job = JobFactory(submission__stage=world.production_stage, submission__batch_system="local",
                     submission__batch_id="7", stdout_path=str(elsewhere))  # fmt: skip
    page = world.client("analysis").get(reverse("launches:job_output", args=[job.pk, "stdout"])).content
    assert b"cluster 8" not in page and b"outside the directories" in page


def test_show_command_displays_the_script_and_creates_nothing(world):
    response = world.client("production").get(reverse("launches:dry_run", args=[world.production_stage.pk]))
    assert response.status_code == 200
    assert b"poms_local_submit" in response.content and b"POMS4_CAMPAIGN_STAGE_ID=" in response.content
    assert not Submission.objects.exists()


def test_destructive_actions_ask_first(world):
    sub = SubmissionFactory(stage=world.production_stage)
    page = world.client("production").get(reverse("launches:control", args=["submission", sub.pk, "kill"]))
    assert b"cannot be undone" in page.content and b'method="post"' in page.content
    sub.refresh_from_db()
    assert sub.get_status_display() == "New"


def test_the_dashboard_charts_launches_per_day_by_status(world):
    from submissions.models import Status

    SubmissionFactory.create_batch(2, stage=world.production_stage, status=Status.FAILED)
    SubmissionFactory(stage=world.analysis_stage, status=Status.RUNNING)
    page = world.client("production").get(reverse("submissions:dashboard"))
    embedded = re.search(r'<script type="application/json" id="daily-data">(.*?)</script>', page.content.decode())
    daily = json.loads(embedded.group(1))
    assert len(daily["labels"]) == 14 and daily["labels"][-1] == timezone.now().date().isoformat()
    assert daily["series"]["Failed"][-1] == 2 and daily["series"]["Running"][-1] == 1
    assert b'id="daily-chart"' in page.content and b'id="daily-data"' in page.content


def test_the_recovery_tree_links_the_original_and_its_recoveries(world):
    original = SubmissionFactory(stage=world.production_stage)
    first = SubmissionFactory(stage=world.production_stage, recovery_parent=original)
    second = SubmissionFactory(stage=world.production_stage, recovery_parent=original)
    page = world.client("production").get(reverse("submissions:detail", args=[first.pk])).content.decode()
    tree = page[page.index('id="recovery-tree"') :][:1500]
    assert f"<b>#{first.pk}</b>" in tree
    for other in (original, second):
        assert reverse("submissions:detail", args=[other.pk]) in tree


def test_paging_keys_survive_the_live_refresh_and_odd_digits_are_the_first_page(world):
    sub = SubmissionFactory(stage=world.production_stage)
    client = world.client("analysis")
    detail = client.get(reverse("submissions:detail", args=[sub.pk]) + "?after=40").content.decode()
    assert f'hx-get="{reverse("submissions:live", args=[sub.pk])}?after=40"' in detail
    table_url = reverse("submissions:stage_table", args=[world.production_stage.pk])
    older = client.get(table_url + "?before=900").content.decode()
    assert f'hx-get="{table_url}?before=900" hx-trigger="every 3s"' in older and "← Newest" in older
    for url in (reverse("submissions:detail", args=[sub.pk]), reverse("submissions:live", args=[sub.pk])):
        assert client.get(url + "?after=²").status_code == 200
    assert client.get(table_url + "?before=²").status_code == 200
