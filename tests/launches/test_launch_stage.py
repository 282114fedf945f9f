"""launch_stage() and run_launch(): the record, the claim, the run, the failures."""

import pytest
from django.core.exceptions import PermissionDenied

from launches import control, services
from launches.batch import Target, get_backend
from launches.tasks import launch_submission
from poms.permissions import actor_for
from submissions.models import Status, Submission
from tests.factories import SubmissionFactory

from .helpers import wait_for

pytestmark = pytest.mark.django_db


def actor(world, who="production"):
    return actor_for(world.users[who], world.experiment)


def test_it_records_a_new_submission_and_enqueues_on_commit(world, django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr(launch_submission, "delay", lambda sid: sent.append(sid))
    with django_capture_on_commit_callbacks(execute=True):
        sub = services.launch_stage(world.production_stage, actor=actor(world))
    assert sent == [sub.pk]
    assert sub.status == Status.NEW and sub.launcher == world.users["production"]
    assert list(sub.history.values_list("status", flat=True)) == [Status.NEW]
    assert sub.snapshot.content["stage"]["name"] == "gen"


def test_an_unchanged_config_shares_its_snapshot(world):
    first = services.launch_stage(world.production_stage, actor=actor(world))
    second = services.launch_stage(world.production_stage, actor=actor(world))
    assert first.snapshot_id == second.snapshot_id
    world.production_stage.param_overrides = [["-N ", "1"]]
    world.production_stage.save()
    third = services.launch_stage(world.production_stage, actor=actor(world))
    assert third.snapshot_id != first.snapshot_id


def test_the_analyst_may_not_launch_production_but_may_launch_their_own(world):
    with pytest.raises(PermissionDenied):
        services.launch_stage(world.production_stage, actor=actor(world, "analysis"))
    assert services.launch_stage(world.analysis_stage, actor=actor(world, "analysis")).pk


def test_list_split_walks_the_datasets_then_says_it_is_exhausted(world):
    stage = world.production_stage
    stage.split_type, stage.dataset = "list", "a, b"
    stage.save()
    datasets = [services.launch_stage(stage, actor=actor(world)).dataset for _ in range(2)]
    assert datasets == ["a", "b"]
    with pytest.raises(services.LaunchError, match="No more splits"):
        services.launch_stage(stage, actor=actor(world))
    assert Submission.objects.filter(stage=stage).count() == 2


def test_a_dry_run_creates_nothing_and_does_not_move_the_cursor(world):
    stage = world.production_stage
    stage.split_type, stage.dataset = "list", "a,b"
    stage.save()
    plan = services.dry_run(stage, actor=actor(world))
    assert plan.dataset == "a" and "poms_local_submit" in plan.command
    stage.refresh_from_db()
    assert stage.split_cursor is None and not Submission.objects.exists()


def test_a_test_campaign_makes_every_launch_a_test(world):
    campaign = world.production_stage.campaign
    campaign.campaign_type = "test"
    campaign.save()
    sub = services.launch_stage(world.production_stage, actor=actor(world))
    assert sub.test and sub.params["test"] == 1


def test_run_launch_captures_the_batch_id_and_a_second_delivery_does_nothing(world):
    sub = services.launch_stage(world.production_stage, actor=actor(world))
    assert services.run_launch(sub.pk) is True
    assert services.run_launch(sub.pk) is False  # redelivered task: already claimed
    sub.refresh_from_db()
    assert sub.batch_id.isdigit() and sub.launch_exit_code == 0
    assert "Submitted local cluster" in open(sub.launch_log).read()
    assert sub.command.startswith(world.production_stage.job_type.launch_script.split()[0])
    assert sub.environment["POMS4_SUBMISSION_ID"] == str(sub.pk)
    services.poll_batch_systems()
    sub.refresh_from_db()
    assert sub.status in (Status.IDLE, Status.RUNNING) and sub.jobs_total == 2


def test_a_failing_launch_is_launch_failed_with_its_log(world):
    jt = world.production_stage.job_type
    jt.launch_script, jt.definition_parameters = "echo boom >&2; exit 7", []
    jt.save()
    sub = services.launch_stage(world.production_stage, actor=actor(world))
    services.run_launch(sub.pk)
    sub.refresh_from_db()
    assert sub.status == Status.LAUNCH_FAILED and sub.launch_exit_code == 7
    assert "boom" in open(sub.launch_log).read()
    assert "exit code 7" in sub.history.last().cause


def test_a_launch_without_a_job_id_is_launch_failed(world):
    jt = world.production_stage.job_type
    jt.launch_script, jt.definition_parameters = "echo all good", []
    jt.save()
    sub = services.launch_stage(world.production_stage, actor=actor(world))
    services.run_launch(sub.pk)
    sub.refresh_from_db()
    assert sub.status == Status.LAUNCH_FAILED and sub.history.last().cause == "launch failed: no job id"


def test_a_hanging_launch_is_killed_with_its_whole_process_group(world, settings, tmp_path):
    settings.POMS_LAUNCH_RUN_TIMEOUT = 1
    pidfile = tmp_path / "grandchild.pid"
    jt = world.production_stage.job_type
    jt.launch_script, jt.definition_parameters = f"sleep 300 & echo $! > {pidfile}; wait", []
    jt.save()
    sub = services.launch_stage(world.production_stage, actor=actor(world))
    services.run_launch(sub.pk)
    sub.refresh_from_db()
    assert sub.status == Status.LAUNCH_FAILED and "timed out" in sub.history.last().cause
    grandchild = int(pidfile.read_text())

    def gone():
        try:
            state = open(f"/proc/{grandchild}/stat").read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        return state == "Z"

    wait_for(gone, timeout=10, what="the grandchild to die")


def test_kill_removes_the_jobs_and_the_submission(world):
    sub = services.launch_stage(world.production_stage, actor=actor(world))
    jt = world.production_stage.job_type
    assert jt.definition_parameters[0] == ["-N ", "2"]
    services.run_launch(sub.pk)
    sub.refresh_from_db()
    control.control(control.affected("submission", sub), "kill", actor=actor(world, "production-shifter"))
    sub.refresh_from_db()
    assert sub.status == Status.REMOVED
    assert sub.history.last().user == world.users["production-shifter"]
    local = get_backend("local")
    wait_for(lambda: {o.state for o in local.poll([Target(sub.pk, sub.batch_id)])} == {"removed"}, what="jobs removed")


def test_stale_new_submissions_become_launch_failed(world, settings):
    settings.POMS_LAUNCH_FAILED_AFTER = 0
    sub = services.launch_stage(world.production_stage, actor=actor(world))
    never_seen = services.launch_stage(world.production_stage, actor=actor(world))
    Submission.objects.filter(pk=never_seen.pk).update(batch_id="31337")
    services.mark_failed_launches()
    sub.refresh_from_db()
    assert sub.status == Status.LAUNCH_FAILED
    assert never_seen.history.last().cause == "no job of batch id 31337 seen within the launch timeout"


def test_a_submission_the_batch_system_cannot_read_is_flagged_and_the_others_are_polled(world):
    good = services.launch_stage(world.production_stage, actor=actor(world))
    services.run_launch(good.pk)
    stray = SubmissionFactory(stage=world.production_stage, batch_system="local", batch_id="999999")
    services.poll_batch_systems(names=["local"])
    stray.refresh_from_db()
    good.refresh_from_db()
    assert "local cluster 999999 is unknown" in stray.poll_error and stray.polled is None
    assert good.polled is not None and good.poll_error == "" and good.jobs_total > 0


def test_a_stage_dataset_with_campaign_keywords_launches_on_the_expanded_name(world):
    stage = world.production_stage
    stage.campaign.keywords = {"energy": "1GeV"}
    stage.campaign.save()
    stage.dataset = "mc_%(energy)s_raw"
    stage.save()
    assert services.launch_stage(stage, actor=actor(world)).dataset == "mc_1GeV_raw"
    stage.dataset = "mc_%(nope)s"
    stage.save()
    with pytest.raises(services.LaunchError, match=r"cannot be expanded: unknown keyword %\(nope\)s"):
        services.launch_stage(stage, actor=actor(world))
