"""Wrapup on the built-in catalogue: Located by completion type, then recovery, then dependents."""

import pytest

from launches import wrapup as workflow
from launches.models import FollowUp
from poms.permissions import actor_for
from sam_adapter import query as q
from submissions.models import Status, Submission
from tests.factories import SubmissionFactory, processed_submission

pytestmark = pytest.mark.django_db


def test_complete_stages_are_located_at_once(world):
    sub = SubmissionFactory(stage=world.production_stage, status=Status.COMPLETED)
    assert workflow.wrapup() == [sub.pk]
    sub.refresh_from_db()
    assert sub.status == Status.LOCATED and sub.history.last().cause == "completion type complete"
    assert workflow.wrapup() == []  # nothing twice


def test_recovery_first_then_dependents(world, chain):
    sim, reco, cat = chain
    first = processed_submission(world, sim, cat, "gen_out", consume={"gen_0.root", "gen_1.root", "gen_2.root"})
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
    again = processed_submission(world, sim, cat, recovery.dataset, consume={"gen_3.root"}, parent=first)
    assert workflow.wrapup() == [again.pk]
    # …nothing is left to recover, so the dependents of the original launch, on all outputs.
    downstream = Submission.objects.get(stage=reco)
    assert downstream.dataset == f"poms_depends_{first.pk}_1"
    assert cat.list_files(q.Dataset(downstream.dataset)) == [f"{sim.name}_gen_{i}.root" for i in range(4)]
    assert FollowUp.objects.filter(kind="dependent").count() == 1


def test_wrapup_twice_launches_nothing_twice(world, chain):
    sim, reco, cat = chain
    first = processed_submission(world, sim, cat, "gen_out", consume={"gen_0.root", "gen_1.root"})
    workflow.wrapup()
    Submission.objects.filter(pk=first.pk).update(status=Status.COMPLETED)  # as if a second wrapup raced it
    workflow.follow_up(first.pk)
    assert Submission.objects.filter(recovery_parent=first).count() == 1


def test_not_enough_located_outputs_waits_then_times_out(world, chain, settings):
    sim, _, cat = chain
    sub = processed_submission(world, sim, cat, "gen_out", consume={"gen_0.root"})
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
    sub = processed_submission(world, sim, cat, "gen_out", consume={"gen_0.root"})
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


@pytest.mark.django_db(transaction=True)
def test_two_wrapups_at_once_locate_and_recover_once(world, chain):
    """Concurrent passes: SKIP LOCKED hands each submission to one of them, the status machine
    allows one Located, and the FollowUp constraint one recovery."""
    from submissions.models import StatusHistory
    from tests.concurrency import run_at_once

    sim, _, cat = chain
    subs = []
    for i in range(3):
        for k in range(2):
            cat.declare(f"in{i}_{k}.root", dataset=f"ds{i}", location="/pnfs")
        subs.append(processed_submission(world, sim, cat, f"ds{i}", consume={f"in{i}_0.root"}))
    run_at_once(workflow.wrapup)
    for sub in subs:
        assert StatusHistory.objects.filter(submission=sub, status=Status.LOCATED).count() == 1
        assert Submission.objects.filter(recovery_parent=sub).count() == 1


def test_follow_ups_lost_to_a_crash_or_an_unreachable_catalogue_are_done_later(world, chain, monkeypatch):
    from launches import recovery
    from sam_adapter.interface import DataHandlerError

    sim, _, cat = chain
    sub = processed_submission(world, sim, cat, "gen_out", consume={"gen_0.root"})

    def unreachable(*args, **kwargs):
        raise DataHandlerError("SAM timed out")

    with monkeypatch.context() as m:  # Located, but the recovery cannot be counted yet
        m.setattr(recovery, "recovery_query", unreachable)
        assert workflow.wrapup() == [sub.pk]
    sub.refresh_from_db()
    assert sub.status == Status.LOCATED and sub.followups_pending
    assert not Submission.objects.filter(recovery_parent=sub).exists()  # not "nothing to recover"
    assert workflow.wrapup() == []  # the next pass finishes the follow-ups
    sub.refresh_from_db()
    assert not sub.followups_pending and Submission.objects.filter(recovery_parent=sub).count() == 1
