"""Wrapup on the built-in catalogue: Located by completion type, then recovery, then dependents."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import JobTypeRecovery, StageDependency
from launches import wrapup as workflow
from launches.models import FollowUp
from poms.permissions import actor_for
from sam_adapter import query as q
from sam_adapter.catalog import CatalogHandler
from sam_adapter.models import FileStatus
from submissions.models import Status, Submission
from tests.factories import StageFactory, SubmissionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain(world):
    """sim (located at 50 %) → reco; sim's job type recovers consumed_status then process_status."""
    sim = world.production_stage
    sim.completion_type, sim.completion_pct, sim.software_version = "located", 50, "v2"
    sim.save()
    JobTypeRecovery.objects.create(job_type=sim.job_type, position=0, recovery_type="consumed_status",
                                   param_overrides=[["--memory=", "4000"]])  # fmt: skip
    JobTypeRecovery.objects.create(job_type=sim.job_type, position=1, recovery_type="process_status")
    reco = StageFactory(experiment=world.experiment, campaign=sim.campaign, creator=sim.creator, name="reco",
                        job_type=sim.job_type, login_setup=sim.login_setup)  # fmt: skip
    StageDependency.objects.create(upstream=sim, downstream=reco, file_pattern="%.root")
    cat = CatalogHandler(world.experiment)
    for i in range(4):
        cat.declare(f"gen_{i}.root", dataset="gen_out", location="/pnfs")
    return sim, reco, cat


def run_submission(world, stage, cat, dataset, consume, parent=None):
    """A Completed submission whose job consumed `consume` of its project's files (others fail)
    and declared a located child per consumed file."""
    from campaigns.services import snapshot_config

    sub = SubmissionFactory(
        stage=stage, status=Status.COMPLETED, recovery_parent=parent, snapshot=snapshot_config(stage)
    )
    # created is auto_now_add; outputs must be newer than the submission, so move it back.
    Submission.objects.filter(pk=sub.pk).update(created=timezone.now() - timedelta(minutes=5))
    project = cat.start_project(f"poms_{stage.name}_{sub.pk}", dataset, submission_id=sub.pk)
    Submission.objects.filter(pk=sub.pk).update(params={"dataset": dataset, "project": project.name})
    while (f := cat.next_file(project, "p1")) is not None:
        if f.name in consume:
            cat.declare(f"{stage.name}_{f.name}", parents=[f.name], version="v2", location="/pnfs/out")
            cat.set_file_status(project, f.name, FileStatus.CONSUMED)
        else:
            cat.set_file_status(project, f.name, FileStatus.FAILED)
    cat.end_process(project, "p1")
    sub.refresh_from_db()
    return sub


def test_complete_stages_are_located_at_once(world):
    sub = SubmissionFactory(stage=world.production_stage, status=Status.COMPLETED)
    assert workflow.wrapup() == [sub.pk]
    sub.refresh_from_db()
    assert sub.status == Status.LOCATED and sub.history.last().cause == "completion type complete"
    assert workflow.wrapup() == []  # nothing twice


def test_recovery_first_then_dependents(world, chain):
    sim, reco, cat = chain
    first = run_submission(world, sim, cat, "gen_out", consume={"gen_0.root", "gen_1.root", "gen_2.root"})
    assert workflow.wrapup() == [first.pk]
    first.refresh_from_db()
    assert first.status == Status.LOCATED and "outputs located: 3" in first.history.last().cause
    assert (first.files_total, first.files_consumed, first.files_failed) == (4, 3, 1)

    recovery = Submission.objects.get(recovery_parent=first)
    assert recovery.stage == sim and recovery.params["overrides"] == [["--memory=", "4000"]]
    assert cat.list_files(q.Dataset(recovery.dataset)) == ["gen_3.root"]
    assert recovery.dataset.startswith("poms_recover_") and recovery.dataset.endswith(f"_{first.pk}_0")
    assert not Submission.objects.filter(stage=reco).exists()  # dependents wait for recoveries
    first.refresh_from_db()
    assert first.params["workflow"]["recoveries"][0]["count"] == 1

    # The recovery now processes its file: a failed recovery still completes, gets Located…
    Submission.objects.filter(pk=recovery.pk).delete()
    again = run_submission(world, sim, cat, recovery.dataset, consume={"gen_3.root"}, parent=first)
    assert workflow.wrapup() == [again.pk]
    # …nothing is left to recover, so the dependents of the original launch, on all outputs.
    downstream = Submission.objects.get(stage=reco)
    assert downstream.dataset == f"poms_depends_{first.pk}_1"
    assert cat.list_files(q.Dataset(downstream.dataset)) == [f"{sim.name}_gen_{i}.root" for i in range(4)]
    assert FollowUp.objects.filter(kind="dependent").count() == 1


def test_wrapup_twice_launches_nothing_twice(world, chain):
    sim, reco, cat = chain
    first = run_submission(world, sim, cat, "gen_out", consume={"gen_0.root", "gen_1.root"})
    workflow.wrapup()
    Submission.objects.filter(pk=first.pk).update(status=Status.COMPLETED)  # as if a second wrapup raced it
    workflow.follow_up(first.pk)
    assert Submission.objects.filter(recovery_parent=first).count() == 1


def test_not_enough_located_outputs_waits_then_times_out(world, chain, settings):
    sim, _, cat = chain
    sub = run_submission(world, sim, cat, "gen_out", consume={"gen_0.root"})
    # Hide the located child: declared but not at any location.
    from sam_adapter.models import CatalogFile

    CatalogFile.objects.filter(name=f"{sim.name}_gen_0.root").update(location="")
    assert workflow.wrapup() == []
    settings.POMS_LOCATED_TIMEOUT = 60
    assert workflow.wrapup() == [sub.pk]
    sub.refresh_from_db()
    assert sub.params["located_by_timeout"] and sub.history.last().cause.startswith("timeout")


def test_followups_can_be_switched_off(world, chain, settings):
    settings.POMS_LAUNCH_FOLLOWUPS = False
    sim, _, cat = chain
    sub = run_submission(world, sim, cat, "gen_out", consume={"gen_0.root"})
    assert workflow.wrapup() == [sub.pk]
    assert Submission.objects.count() == 1


def test_kicks(world, chain):
    sim, _, cat = chain
    sub = SubmissionFactory(stage=sim, status=Status.FAILED)
    prod = actor_for(world.users["production"], world.experiment)
    workflow.kick(sub, "completed", actor=prod)
    sub.refresh_from_db()
    assert sub.status == Status.COMPLETED and sub.history.last().user == world.users["production"]
    workflow.kick(sub, "located", actor=prod)
    sub.refresh_from_db()
    assert sub.status == Status.LOCATED and sub.history.last().cause == "kicked to Located by a user"
