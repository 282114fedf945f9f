"""Wrapup under the conditions a review found it weak in: many waiting submissions, garbled or
missing catalogue answers, refused kicks and callbacks, manual recoveries, refused dependents,
racing passes, approval stages."""

import threading

import pytest
from django.db import connection, transaction
from django.test import Client

from campaigns.models import StageDependency
from campaigns.services import snapshot_config
from launches import control, recovery, services
from launches import wrapup as workflow
from launches.models import FollowUp
from poms.permissions import actor_for
from poms.tokens import issue_callback_token
from sam_adapter import query as q
from sam_adapter.catalog import CatalogHandler
from sam_adapter.interface import DataHandlerError
from sam_adapter.models import CatalogFile, FileStatus, ProjectFile
from submissions.models import Status, Submission
from tests.factories import ExperimentFactory, StageFactory, SubmissionFactory, processed_submission

pytestmark = pytest.mark.django_db


def prod(world):
    return actor_for(world.users["production"], world.experiment)


def test_a_ready_submission_is_not_starved_by_a_hundred_older_ones_still_waiting(world, chain):
    sim, _, _cat = chain
    for _ in range(workflow.CHUNK):
        SubmissionFactory(stage=sim, status=Status.COMPLETED)  # outputs not located yet
    ready = SubmissionFactory(stage=world.analysis_stage, status=Status.COMPLETED)  # completion type complete
    workflow.wrapup()  # examines the oldest hundred, none ready
    assert workflow.wrapup() == [ready.pk]  # the next pass starts with the ones not examined yet


def test_one_garbled_catalogue_answer_does_not_stop_the_pass(world, monkeypatch):
    bad = SubmissionFactory(stage=world.production_stage, status=Status.COMPLETED)
    Submission.objects.filter(pk=bad.pk).update(params={"project": "p1"})
    ready = SubmissionFactory(stage=world.analysis_stage, status=Status.COMPLETED)

    def garbled(self, project):
        raise ValueError("invalid literal for int() with base 10: 'n/a'")

    monkeypatch.setattr(CatalogHandler, "project_summary", garbled)
    assert workflow.wrapup() == [ready.pk]
    bad.refresh_from_db()
    assert bad.status == Status.COMPLETED and bad.wrapup_checked is not None  # tried again, after the others


def test_a_refused_kick_to_located_changes_nothing(world, chain):
    sim, _, cat = chain
    sub = processed_submission(world, sim, cat, "gen_out", consume={"gen_0.root"})
    CatalogFile.objects.filter(name__startswith=f"{sim.name}_").update(location="")  # no output located
    Submission.objects.filter(pk=sub.pk).update(status=Status.RUNNING)
    sub.refresh_from_db()
    with pytest.raises(services.LaunchError, match="is Running: it cannot be kicked to Located"):
        workflow.kick(sub, "located", actor=prod(world))
    assert "force_located" not in Submission.objects.get(pk=sub.pk).params
    Submission.objects.filter(pk=sub.pk).update(status=Status.COMPLETED)  # the jobs end later
    workflow.wrapup()
    assert Submission.objects.get(pk=sub.pk).status == Status.COMPLETED  # not Located without outputs


def test_a_job_cannot_report_located_or_awaiting_approval(world, chain):
    sim, _, cat = chain
    sub = processed_submission(world, sim, cat, "gen_out", consume={"gen_0.root"})
    token = issue_callback_token(sub.launcher, sub.experiment, sub.pk)
    for status in ("Located", "8000", "Awaiting Approval"):
        reply = Client().post(
            "/api/update_submission", {"submission_id": sub.pk, "status": status}, HTTP_AUTHORIZATION=f"Bearer {token}"
        )
        assert reply.status_code == 400 and "POMS's to decide" in reply.content.decode()
    assert Submission.objects.get(pk=sub.pk).status == Status.COMPLETED


def test_a_manual_recovery_leaves_the_automatic_list_where_it_was(world, chain):
    sim, _, cat = chain
    first = processed_submission(world, sim, cat, "gen_out", consume={"gen_0.root", "gen_1.root", "gen_2.root"})
    assert recovery.launch_recovery_if_needed(first, prod(world), only="process_status")
    assert Submission.objects.get(pk=first.pk).recovery_position == 0
    workflow.wrapup()
    automatic = Submission.objects.get(pk=first.pk).params["workflow"]["recoveries"][1]
    assert automatic["type"] == "consumed_status"  # position 0 of the job type's list


def test_a_dependent_refused_by_permissions_does_not_stop_the_others(world, chain):
    sim, reco, cat = chain
    assert world.analysis_stage.pk < reco.pk  # tried first
    StageDependency.objects.create(upstream=sim, downstream=world.analysis_stage, file_pattern="%.root")
    sim.job_type.recoveries.all().delete()
    sub = processed_submission(world, sim, cat, "gen_out", consume={f"gen_{i}.root" for i in range(4)})
    workflow.wrapup()
    assert Submission.objects.filter(stage=reco).count() == 1
    assert not Submission.objects.filter(stage=world.analysis_stage).exists()
    assert not Submission.objects.get(pk=sub.pk).followups_pending


def test_a_self_dependency_relaunch_waits_out_a_catalogue_outage(world, monkeypatch):
    cat = CatalogHandler(world.experiment)
    for i in range(6):
        cat.declare(f"raw_{i}.root", dataset="raw", location="/pnfs")
    stage = world.production_stage  # completion type complete
    stage.dataset, stage.split_type, stage.split_cursor = "raw", "nfiles(2)", 1
    stage.save()
    StageDependency.objects.create(upstream=stage, downstream=stage)
    sub = SubmissionFactory(stage=stage, status=Status.COMPLETED, snapshot=snapshot_config(stage))
    real = CatalogHandler.count

    def down(self, query):
        raise DataHandlerError("catalogue timed out")

    monkeypatch.setattr(CatalogHandler, "count", down)
    workflow.wrapup()
    assert Submission.objects.get(pk=sub.pk).followups_pending
    monkeypatch.setattr(CatalogHandler, "count", real)
    workflow.wrapup()
    assert Submission.objects.filter(stage=stage).exclude(pk=sub.pk).count() == 1


def test_two_follow_ups_of_one_submission_launch_one_recovery_whatever_position_they_read(world, chain):
    sim, _, cat = chain
    sub = processed_submission(world, sim, cat, "gen_out", consume={"gen_0.root"})
    FollowUp.objects.create(submission=sub, kind=FollowUp.RECOVERY, position=5, dataset="another pass's")
    Submission.objects.filter(pk=sub.pk).update(status=Status.LOCATED, recovery_position=1)
    sub.refresh_from_db()
    # The "already launched?" check raced past; the constraint still refuses a second recovery.
    found = recovery.recovery_query("consumed_status", sub, cat)
    step = {"type": "consumed_status", "param_overrides": []}
    assert recovery._launch(sub, sub, 1, step, "poms_recover_x", found, 3, cat, prod(world)) is True
    assert not Submission.objects.filter(recovery_parent=sub).exists()


@pytest.mark.parametrize("completion", ["complete", "located"])
def test_an_approved_submission_is_located_and_passes_its_dataset_on(world, completion):
    cat = CatalogHandler(world.experiment)
    for i in range(3):
        cat.declare(f"raw_{i}.root", dataset="to_approve", location="/pnfs")
    gate = world.production_stage
    gate.stage_type, gate.dataset, gate.completion_type = "approval", "to_approve", completion
    gate.save()
    reco = StageFactory(experiment=world.experiment, campaign=gate.campaign, creator=gate.creator, name="reco",
                        job_type=gate.job_type, login_setup=gate.login_setup)  # fmt: skip
    StageDependency.objects.create(upstream=gate, downstream=reco, file_pattern="%")
    sub = services.launch_stage(gate, actor=prod(world))
    control.decide_approval(sub, True, actor=prod(world))
    assert workflow.wrapup() == [sub.pk]
    down = Submission.objects.get(stage=reco)
    assert cat.count(q.Dataset(down.dataset)) == 3


@pytest.mark.django_db(transaction=True)
def test_a_file_another_project_is_handing_out_is_not_hidden_from_this_one():
    cat = CatalogHandler(ExperimentFactory(name="nova"))
    cat.declare("only.root", dataset="ds", location="/pnfs")
    first, second = cat.start_project("p1", "ds"), cat.start_project("p2", "ds")
    holding, release, got = threading.Event(), threading.Event(), {}

    def job_of_the_first_project():
        try:
            with transaction.atomic():
                got["p1"] = cat.next_file(first, "job1")
                holding.set()
                release.wait(10)
        finally:
            connection.close()

    job = threading.Thread(target=job_of_the_first_project)
    job.start()
    holding.wait(10)
    try:
        got["p2"] = cat.next_file(second, "job2")
    finally:
        release.set()
        job.join()
    assert got["p1"] is not None and got["p2"] is not None
    assert not ProjectFile.objects.filter(project=second, status=FileStatus.PENDING).exists()
