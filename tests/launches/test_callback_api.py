"""The callback API (update_submission, get_submission_id_for) and its tokens; abort launch."""

import sys
import threading

import pytest
from django.test import Client
from django.urls import reverse

from launches import control, services
from launches.batch import get_backend
from launches.tasks import launch_submission
from poms.models import CallbackToken
from poms.permissions import actor_for
from poms.tokens import create_api_token, issue_callback_token
from submissions.models import Status, Submission
from tests.factories import BIN, SubmissionFactory

from .helpers import wait_for

pytestmark = pytest.mark.django_db
UPDATE = "/api/update_submission"
REGISTER = "/api/get_submission_id_for"


def bearer(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_a_launch_gets_a_callback_token_that_is_never_stored(world):
    jt = world.production_stage.job_type
    # The "wrapper" reports its job id through the API instead of printing it, as jobsub_lite's hook does.
    jt.launch_script, jt.definition_parameters = 'echo "token=${POMS_SUBMISSION_TOKEN:0:6}"', []
    jt.save()
    sub = services.launch_stage(world.production_stage, actor=actor_for(world.users["production"], world.experiment))
    services.run_launch(sub.pk)
    sub.refresh_from_db()
    assert "token=pomss_" in open(sub.launch_log).read()
    assert "POMS_SUBMISSION_TOKEN" not in sub.environment
    assert CallbackToken.objects.get(submission_id=sub.pk).user == world.users["production"]
    assert sub.status == Status.LAUNCH_FAILED  # no job id printed and none reported


def test_the_submission_token_reports_the_job_id_and_status(world):
    sub = SubmissionFactory(stage=world.production_stage)
    token = issue_callback_token(sub.launcher, sub.experiment, sub.pk)
    client = Client()
    reply = client.get(
        UPDATE,
        {"submission_id": sub.pk, "jobsub_job_id": "23733516.0@jobsub02.fnal.gov", "status": "New"},
        **bearer(token),
    )
    assert (reply.status_code, reply.content) == (200, b"Ok.")
    sub.refresh_from_db()
    assert sub.batch_id == "23733516@jobsub02.fnal.gov" and sub.status == Status.NEW
    assert client.post(UPDATE, {"submission_id": sub.pk, "status": "Running"}, **bearer(token)).status_code == 200
    assert (
        client.post(UPDATE, {"submission_id": sub.pk, "status": "7000", "project": "p1"}, **bearer(token)).content
        == b"Ok."
    )
    sub.refresh_from_db()
    assert sub.status == Status.COMPLETED and sub.params["project"] == "p1"
    assert list(sub.history.values_list("status", flat=True)) == [Status.NEW, Status.RUNNING, Status.COMPLETED]
    other = SubmissionFactory(stage=world.production_stage)
    assert client.post(UPDATE, {"submission_id": other.pk, "status": "Running"}, **bearer(token)).status_code == 401


def test_a_batch_id_is_named_once_and_never_one_that_belongs_to_another_submission(world):
    production = SubmissionFactory(stage=world.production_stage, batch_id="4242@jobsub02.fnal.gov")
    own = SubmissionFactory(stage=world.analysis_stage, creator=world.users["analysis"])
    _, token = create_api_token(world.users["analysis"], "laptop")
    client = Client()
    stolen = client.post(UPDATE, {"submission_id": own.pk, "jobsub_job_id": production.batch_id}, **bearer(token))
    assert stolen.status_code == 409 and b"belongs to another submission" in stolen.content
    assert client.post(
        UPDATE, {"submission_id": own.pk, "jobsub_job_id": "77.0@jobsub01"}, **bearer(token)
    ).content == (b"Ok.")
    again = client.post(UPDATE, {"submission_id": own.pk, "jobsub_job_id": "78.0@jobsub01"}, **bearer(token))
    assert again.status_code == 409 and b"already has batch id 77@jobsub01" in again.content
    assert client.post(
        UPDATE, {"submission_id": own.pk, "jobsub_job_id": "77.0@jobsub01"}, **bearer(token)
    ).content == (b"Ok.")  # the same id again: a wrapper and the launch output may both report it
    own.refresh_from_db()
    assert own.batch_id == "77@jobsub01"


def test_personal_tokens_act_with_their_owner_permissions(world):
    sub = SubmissionFactory(stage=world.production_stage)
    _, shifter = create_api_token(world.users["production-shifter"], "cron")
    _, analyst = create_api_token(world.users["analysis"], "laptop")
    client = Client()
    assert client.post(UPDATE, {"submission_id": sub.pk, "status": "Idle"}, **bearer(analyst)).status_code == 403
    assert client.post(UPDATE, {"submission_id": sub.pk, "status": "Idle"}, **bearer(shifter)).status_code == 200
    sub.refresh_from_db()
    assert sub.status == Status.IDLE


@pytest.mark.parametrize(
    "params, headers, code",
    [
        ({"submission_id": "x"}, "good", 400),
        ({"submission_id": "1", "status": "Bogus"}, "good", 400),
        ({"submission_id": "1", "status": "Idle"}, None, 401),
        ({"submission_id": "1", "status": "Idle"}, "pomsu_wrong", 401),
    ],
)
def test_bad_callbacks_get_a_clear_error_and_change_nothing(world, params, headers, code):
    sub = SubmissionFactory(stage=world.production_stage)
    params = {k: (sub.pk if v == "1" else v) for k, v in params.items()}
    _, good = create_api_token(world.users["production"], "t")
    extra = bearer(good if headers == "good" else headers) if headers else {}
    reply = Client().post(UPDATE, params, **extra)
    assert reply.status_code == code and reply.content  # a message, not an empty body
    sub.refresh_from_db()
    assert sub.status == Status.NEW and sub.history.count() == 1


def test_session_cookies_do_not_authenticate_the_api(world):
    sub = SubmissionFactory(stage=world.production_stage)
    assert world.client("production").post(UPDATE, {"submission_id": sub.pk, "status": "Idle"}).status_code == 401


def test_registering_an_external_launch(world):
    _, token = create_api_token(world.users["production"], "wrapper")
    stage = world.production_stage
    reply = Client().post(
        REGISTER,
        {"campaign_stage_id": stage.pk, "command_executed": "jobsub_submit -G nova file://x.sh", "input_dataset": "ds"},
        **bearer(token),
    )
    assert reply.status_code == 200 and reply.content.startswith(b"Task=")
    sub = Submission.objects.get(pk=int(reply.content.split(b"=")[1]))
    assert (sub.stage, sub.status, sub.dataset, sub.command) == (
        stage,
        Status.NEW,
        "ds",
        "jobsub_submit -G nova file://x.sh",
    )
    again = Client().post(
        REGISTER, {"campaign_stage_id": stage.pk, "submission_id": sub.pk, "project": "proj"}, **bearer(token)
    )
    assert again.content == f"Task={sub.pk}".encode()
    _, analyst = create_api_token(world.users["analysis"], "x")
    assert Client().post(REGISTER, {"campaign_stage_id": stage.pk}, **bearer(analyst)).status_code == 403


def test_the_token_page_shows_a_new_token_once(world):
    client = world.client("analysis")
    page = client.post(reverse("api_tokens"), {"name": "laptop"}).content.decode()
    assert 'id="new-token">pomsu_' in page
    assert "pomsu_" not in client.get(reverse("api_tokens")).content.decode()


@pytest.mark.django_db(transaction=True)
def test_abort_kills_a_running_launch(world, monkeypatch):
    # The launch is run by the thread below, not by a Celery worker an earlier test left listening.
    monkeypatch.setattr(launch_submission, "delay_on_commit", lambda *a, **k: None)
    jt = world.production_stage.job_type
    jt.launch_script, jt.definition_parameters = "echo started; sleep 120", []
    jt.save()
    prod = actor_for(world.users["production"], world.experiment)
    sub = services.launch_stage(world.production_stage, actor=prod)
    runner = threading.Thread(target=services.run_launch, args=(sub.pk,))
    runner.start()
    wait_for(lambda: Submission.objects.get(pk=sub.pk).launch_started, what="launch to start")
    sub.refresh_from_db()
    services.abort_launch(sub, actor=prod)
    runner.join(timeout=20)
    assert not runner.is_alive()
    sub.refresh_from_db()
    assert sub.status == Status.LAUNCH_FAILED and sub.history.last().cause == "launch failed: aborted"
    assert "(aborted)" in open(sub.launch_log).read()
    with pytest.raises(services.LaunchError, match="no launch running"):
        services.abort_launch(sub, actor=prod)


@pytest.mark.django_db(transaction=True)
def test_killing_a_submission_whose_launch_runs_stops_the_launch_and_removes_its_jobs(world, monkeypatch):
    monkeypatch.setattr(launch_submission, "delay_on_commit", lambda *a, **k: None)
    jt = world.production_stage.job_type
    # Submits a job at once, then keeps the launch busy: a kill lands while it runs.
    jt.launch_script = f"{sys.executable} {BIN / 'poms_local_submit'} -N 1 -- sleep 300 && sleep 120"
    jt.definition_parameters = []
    jt.save()
    prod = actor_for(world.users["production"], world.experiment)
    sub = services.launch_stage(world.production_stage, actor=prod)
    runner = threading.Thread(target=services.run_launch, args=(sub.pk,))
    runner.start()

    def submitted():
        log = Submission.objects.get(pk=sub.pk).launch_log
        return log and "Submitted local cluster" in open(log).read()

    wait_for(submitted, what="the launch to submit")
    control.control(Submission.objects.filter(pk=sub.pk), "kill", actor=prod)
    runner.join(timeout=30)
    assert not runner.is_alive()
    sub.refresh_from_db()
    assert sub.status == Status.REMOVED and sub.batch_id
    records = lambda: [rec["state"] for _path, rec in get_backend("local")._records(sub.batch_id)]  # noqa: E731
    wait_for(lambda: records() == ["removed"], what="the job submitted during the launch to be removed")


def test_approve_and_reject_decide_under_the_row_lock(world):
    prod = actor_for(world.users["production"], world.experiment)
    sub = SubmissionFactory(stage=world.production_stage, status=Status.AWAITING_APPROVAL)
    control.decide_approval(sub, False, actor=prod)
    with pytest.raises(services.LaunchError, match="is Removed, not awaiting approval"):
        control.decide_approval(sub, True, actor=prod)
    assert Submission.objects.get(pk=sub.pk).status == Status.REMOVED


def test_a_launch_that_crashes_after_its_claim_is_launch_failed_with_the_reason(world, monkeypatch):
    sub = services.launch_stage(world.production_stage, actor=actor_for(world.users["production"], world.experiment))

    def broken(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(services, "issue_callback_token", broken)
    with pytest.raises(OSError):
        services.run_launch(sub.pk)
    sub.refresh_from_db()
    assert sub.status == Status.LAUNCH_FAILED and sub.launch_finished is not None
    assert sub.history.last().cause == "launch crashed: OSError: No space left on device"


def test_relaunching_a_recovery_keeps_it_a_recovery(world):
    prod = actor_for(world.users["production"], world.experiment)
    parent = SubmissionFactory(stage=world.production_stage)
    recovery = SubmissionFactory(stage=world.production_stage, recovery_parent=parent)
    assert services.relaunch(recovery, actor=prod).recovery_parent_id == parent.pk


def test_a_callback_token_ends_with_its_submission(world):
    sub = SubmissionFactory(stage=world.production_stage)
    token = issue_callback_token(sub.launcher, sub.experiment, sub.pk)
    client = Client()
    assert client.post(UPDATE, {"submission_id": sub.pk, "status": "Running"}, **bearer(token)).status_code == 200
    control.control(Submission.objects.filter(pk=sub.pk), "kill", actor=actor_for(sub.launcher, sub.experiment))
    assert client.post(UPDATE, {"submission_id": sub.pk, "status": "Running"}, **bearer(token)).status_code == 401
    assert not CallbackToken.objects.filter(submission_id=sub.pk).exists()


def test_a_personal_token_acts_with_the_membership_role_whatever_the_header_shows(world):
    from poms.models import Preference

    sub = SubmissionFactory(stage=world.production_stage)
    _, token = create_api_token(world.users["production"], "cron")
    Preference.objects.create(user=world.users["production"], experiment=world.experiment, role="analysis")
    reply = Client().post(UPDATE, {"submission_id": sub.pk, "status": "Running"}, **bearer(token))
    assert reply.status_code == 200


def test_revoking_tokens_takes_only_numbers_and_names_never_reach_javascript(world):
    client = world.client("analysis")
    client.post(reverse("api_tokens"), {"name": "x');alert(document.cookie);('"})
    page = client.get(reverse("api_tokens")).content.decode()
    assert 'data-name="x&#39;);alert(document.cookie);(&#39;"' in page
    assert "confirm('Revoke ' + this.dataset.name" in page and "Revoke x" not in page
    assert client.post(reverse("api_tokens"), {"revoke": "abc"}, follow=True).status_code == 200
    assert client.post(reverse("api_tokens"), {"revoke": "²"}, follow=True).status_code == 200


def test_the_callback_api_does_not_tell_strangers_which_submissions_exist(world):
    sub = SubmissionFactory(stage=world.production_stage)
    assert Client().post(UPDATE, {"submission_id": sub.pk, "status": "Running"}).status_code == 401
    assert Client().post(UPDATE, {"submission_id": sub.pk + 999, "status": "Running"}).status_code == 401
    _, outsider = create_api_token(world.users["non-member"], "x")
    for pk in (sub.pk, sub.pk + 999):
        assert Client().post(UPDATE, {"submission_id": pk, "status": "Running"}, **bearer(outsider)).status_code == 404
