"""Holds and the launch queue, approvals, campaign launch, and control at three scopes."""

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from campaigns.models import StageDependency, StageType
from launches import control, services
from launches.models import HeldLaunch, LaunchHold
from poms.permissions import actor_for
from submissions.models import Status, Submission
from tests.factories import StageFactory, SubmissionFactory

from .helpers import wait_for

pytestmark = pytest.mark.django_db


def actor(world, who="production"):
    return actor_for(world.users[who], world.experiment)


def test_a_queued_stage_queues_launches_and_release_runs_them_oldest_first_as_the_launcher(world):
    stage = world.production_stage
    control.set_stage_hold([stage], "queue", actor=actor(world))
    with pytest.raises(services.LaunchHeld):
        services.launch_stage(stage, actor=actor(world, "production-shifter"), dataset="first")
    with pytest.raises(services.LaunchHeld):
        services.launch_stage(stage, actor=actor(world), dataset="second", test=True)
    assert not Submission.objects.exists()
    assert list(HeldLaunch.objects.values_list("dataset", flat=True)) == ["first", "second"]

    launched = control.set_stage_hold([stage], "release", actor=actor(world))
    assert [(s.dataset, s.launcher.username, s.test) for s in launched] == [
        ("first", "production_shifter", False),
        ("second", "production", True),
    ]
    assert not HeldLaunch.objects.exists()
    stage.refresh_from_db()
    assert not stage.is_held


def test_a_released_stage_runs_its_queue_even_when_the_batch_system_refuses_the_release(world):
    stage = world.production_stage
    control.set_stage_hold([stage], "queue", actor=actor(world))
    with pytest.raises(services.LaunchHeld):
        services.launch_stage(stage, actor=actor(world), dataset="queued")
    SubmissionFactory(stage=stage, status=Status.HELD, batch_system="local", batch_id="424242")  # unknown cluster
    with pytest.raises(services.LaunchError, match="refused to release"):
        control.set_stage_hold([stage], "release", actor=actor(world))
    assert not HeldLaunch.objects.exists()
    assert Submission.objects.filter(stage=stage, params__dataset="queued").exists()


def test_the_experiment_switch_holds_everything_until_released(world):
    boss = actor(world, "superuser")
    with pytest.raises(PermissionDenied):
        control.hold_launches(world.experiment, actor=actor(world))
    control.hold_launches(world.experiment, actor=boss)
    with pytest.raises(services.LaunchHeld, match="launches in nova held by superuser"):
        services.launch_stage(world.analysis_stage, actor=actor(world, "analysis"))
    # a stage hold still applies after the switch is released: that launch stays queued
    control.set_stage_hold([world.production_stage], "queue", actor=actor(world))
    with pytest.raises(services.LaunchHeld):
        services.launch_stage(world.production_stage, actor=actor(world))
    launched = control.release_launches(world.experiment, actor=boss)
    assert [s.stage for s in launched] == [world.analysis_stage]
    assert list(HeldLaunch.objects.values_list("stage", flat=True)) == [world.production_stage.pk]


def test_a_held_launch_answers_423_with_a_page_saying_so(world):
    control.set_stage_hold([world.production_stage], "queue", actor=actor(world))
    response = world.client("production").post(reverse("launches:launch", args=[world.production_stage.pk]))
    assert response.status_code == 423
    assert b"Launch held" in response.content and b"was queued" in response.content


def test_each_role_sees_its_part_of_the_queue_and_owners_delete_theirs(world):
    control.hold_launches(world.experiment, actor=actor(world, "superuser"))
    for who, stage in [("analysis", world.analysis_stage), ("production", world.production_stage)]:
        with pytest.raises(services.LaunchHeld):
            services.launch_stage(stage, actor=actor(world, who))
    seen = {
        who: {h.launcher.username for h in control.visible_held_launches(actor(world, who), world.experiment)}
        for who in ("analysis", "production-shifter", "production", "superuser")
    }
    assert seen == {
        "analysis": {"analysis"},
        "production-shifter": {"production"},
        "production": {"production"},
        "superuser": {"analysis", "production"},
    }
    mine = HeldLaunch.objects.get(launcher=world.users["analysis"])
    with pytest.raises(PermissionDenied):
        control.delete_held_launch(mine, actor=actor(world, "production"))
    control.delete_held_launch(mine, actor=actor(world, "analysis"))
    assert HeldLaunch.objects.count() == 1


def test_an_approval_stage_runs_nothing_and_waits_for_a_decision(world):
    stage = world.production_stage
    stage.stage_type = StageType.APPROVAL
    stage.save()
    sub = services.launch_stage(stage, actor=actor(world))
    sub.refresh_from_db()
    assert sub.status == Status.AWAITING_APPROVAL and not sub.command
    with pytest.raises(PermissionDenied):
        control.decide_approval(sub, True, actor=actor(world, "analysis"))
    control.decide_approval(sub, True, actor=actor(world, "production-shifter"))
    sub.refresh_from_db()
    assert sub.status == Status.COMPLETED
    with pytest.raises(services.LaunchError, match="not awaiting approval"):
        control.decide_approval(sub, False, actor=actor(world))
    rejected = services.launch_stage(stage, actor=actor(world))
    control.decide_approval(rejected, False, actor=actor(world))
    rejected.refresh_from_db()
    assert rejected.status == Status.REMOVED


def test_campaign_launch_picks_the_unique_leading_stage(world):
    stage = world.production_stage
    other = StageFactory(
        experiment=world.experiment, campaign=stage.campaign, creator=stage.creator, name="sim",
        job_type=stage.job_type, login_setup=stage.login_setup,
    )  # fmt: skip
    with pytest.raises(services.LaunchError, match=r"2 candidates \(gen, sim\)"):
        control.launch_campaign(stage.campaign, actor=actor(world))
    StageDependency.objects.create(upstream=stage, downstream=other)
    assert control.launch_campaign(stage.campaign, actor=actor(world)).stage == stage


def test_kill_and_hold_reach_every_active_submission_of_a_stage_or_campaign(world):
    stage = world.production_stage
    jt = stage.job_type
    jt.definition_parameters = [["-N ", "1"], ["--queue-delay ", "0"], ["-- ", "sleep"], ["", "30"]]
    jt.save()
    subs = [services.launch_stage(stage, actor=actor(world)) for _ in range(2)]
    for sub in subs:
        services.run_launch(sub.pk)
    services.launch_stage(world.analysis_stage, actor=actor(world, "analysis"))  # other stage: untouched

    def all_in(status):
        # Signals land asynchronously; poll as beat would until the kernel shows the new state.
        services.poll_batch_systems()
        return set(Submission.objects.filter(stage=stage).values_list("status", flat=True)) == {status}

    wait_for(lambda: all_in(Status.RUNNING), what="running")
    assert control.affected("campaign", stage.campaign).count() == 2
    control.control(control.affected("stage", stage), "hold", actor=actor(world))
    wait_for(lambda: all_in(Status.HELD), what="held")
    control.control(control.affected("campaign", stage.campaign), "release", actor=actor(world))
    wait_for(lambda: all_in(Status.RUNNING), what="released")
    control.control(control.affected("stage", stage), "kill", actor=actor(world, "production-shifter"))
    assert set(Submission.objects.filter(stage=stage).values_list("status", flat=True)) == {Status.REMOVED}
    assert Submission.objects.get(stage=world.analysis_stage).status == Status.NEW


def test_the_confirmation_page_lists_what_will_be_affected(world):
    subs = [services.launch_stage(world.production_stage, actor=actor(world)) for _ in range(3)]
    page = world.client("production").get(
        reverse("launches:control", args=["stage", world.production_stage.pk, "kill"])
    )
    assert b"This reaches <b>3</b> submissions" in page.content
    for sub in subs:
        assert f"<td>{sub.pk}</td>".encode() in page.content
    assert set(Submission.objects.values_list("status", flat=True)) == {Status.NEW}


def test_root_holds_launches_in_every_experiment(world):
    from django.test import Client

    from launches.models import LaunchHold
    from tests.factories import UserFactory

    root = Client()
    root.force_login(UserFactory(username="root", is_superuser=True))
    assert (
        world.client("superuser").post(reverse("launches:switch", args=["hold"]), {"scope": "all"}).status_code == 403
    )
    root.post(reverse("launches:switch", args=["hold"]), {"scope": "all"})
    assert LaunchHold.objects.get().experiment is None
    with pytest.raises(services.LaunchHeld, match="all experiments"):
        services.launch_stage(world.production_stage, actor=actor(world))
    root.post(reverse("launches:switch", args=["release"]), {"scope": "all"})
    assert not LaunchHold.objects.exists() and Submission.objects.filter(stage=world.production_stage).count() == 1


def test_a_launch_requested_before_its_stage_was_held_is_queued_again_not_run(
    world, django_capture_on_commit_callbacks
):
    stage = world.production_stage
    sub = services.launch_stage(stage, actor=actor(world), dataset="slice_7")
    control.set_stage_hold([stage], "queue", actor=actor(world, "production-shifter"))
    assert services.run_launch(sub.pk) is False  # the worker's turn comes after the hold
    sub.refresh_from_db()
    assert sub.status == Status.CANCELLED and sub.launch_started is None
    held = HeldLaunch.objects.get()
    assert (held.dataset, held.launcher, sub.history.last().user) == (
        "slice_7",
        world.users["production"],
        world.users["production-shifter"],
    )
    launched = control.set_stage_hold([stage], "release", actor=actor(world))
    assert [s.dataset for s in launched] == ["slice_7"]


@pytest.mark.django_db(transaction=True)
def test_an_experiment_release_waits_for_a_launch_being_queued_and_drains_it(world):
    import threading

    from django.db import connection, transaction

    boss = actor(world, "superuser")
    control.hold_launches(world.experiment, actor=boss)
    queued, commit = threading.Event(), threading.Event()

    def launch_being_queued():
        try:
            with transaction.atomic():
                try:
                    services.launch_stage(world.production_stage, actor=actor(world), dataset="late")
                except services.LaunchHeld:
                    queued.set()
                commit.wait(10)  # the queuing transaction is still open while the release starts
        finally:
            connection.close()

    thread = threading.Thread(target=launch_being_queued)
    thread.start()
    queued.wait(10)
    threading.Timer(0.5, commit.set).start()
    launched = control.release_launches(world.experiment, actor=boss)
    thread.join()
    assert [s.dataset for s in launched] == ["late"] and not HeldLaunch.objects.exists()


def test_a_queued_launch_that_can_never_run_is_dropped_and_one_that_may_later_stays(world, monkeypatch):
    stage = world.production_stage
    control.set_stage_hold([stage], "queue", actor=actor(world))
    for dataset in ("doomed", "patient"):
        with pytest.raises(services.LaunchHeld):
            services.launch_stage(stage, actor=actor(world), dataset=dataset)
    real = services._record_launch

    def record(stage, actor, dataset, *args):
        if dataset == "doomed":
            raise services.LaunchError("The launch command cannot be composed: unknown keyword")
        raise services.LaunchUnavailable("The data handling service could not give the next split")

    monkeypatch.setattr(services, "_record_launch", record)
    assert control.set_stage_hold([stage], "release", actor=actor(world)) == []
    assert list(HeldLaunch.objects.values_list("dataset", flat=True)) == ["patient"]
    monkeypatch.setattr(services, "_record_launch", real)
    assert [s.dataset for s in control.drain(HeldLaunch.objects.all())] == ["patient"]


def test_the_confirmation_counts_everything_it_reaches_beyond_the_rows_it_lists(world):
    stage = world.production_stage
    for _ in range(3):
        SubmissionFactory(stage=stage, status=Status.RUNNING)
    page = world.client("production").get(reverse("launches:control", args=["stage", stage.pk, "kill"]))
    assert b"This reaches <b>3</b> submissions:" in page.content


def test_root_without_an_experiment_is_asked_to_pick_one_before_holding_just_one(world):
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("root", "root@example.org", "pw")
    client = world.client("production")
    client.force_login(get_user_model().objects.get(username="root"))
    reply = client.post(reverse("launches:switch", args=["hold"]), follow=True)
    assert b"Pick an experiment in the header first" in reply.content
    assert not LaunchHold.objects.exists()
