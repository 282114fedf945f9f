"""The transition table of DESIGN §5, rule by rule."""

import pytest
from django.utils import timezone

from submissions import services
from submissions.models import JobState, StatusHistory
from submissions.models import Status as S
from submissions.status import decide, derive_from_jobs
from tests.factories import SubmissionFactory


def test_it_moves_through_the_normal_lifecycle():
    assert decide(S.NEW, S.IDLE) == S.IDLE
    assert decide(S.IDLE, S.RUNNING) == S.RUNNING
    assert decide(S.RUNNING, S.HELD) == S.HELD
    assert decide(S.HELD, S.RUNNING) == S.RUNNING
    assert decide(S.RUNNING, S.COMPLETED) == S.COMPLETED
    assert decide(S.COMPLETED, S.LOCATED) == S.LOCATED


@pytest.mark.parametrize("lower", [S.NEW, S.IDLE, S.RUNNING, S.HELD, S.FAILED, S.LAUNCH_FAILED])
def test_it_never_returns_below_completed(lower):
    assert decide(S.COMPLETED, lower) is None
    assert decide(S.COMPLETED, lower, by_user=True) is None


@pytest.mark.parametrize("final", [S.LOCATED, S.REMOVED, S.FAILED, S.CANCELLED])
@pytest.mark.parametrize("proposed", [S.IDLE, S.RUNNING, S.HELD, S.COMPLETED, S.LOCATED, S.REMOVED])
def test_final_states_ignore_automatic_updates(final, proposed):
    assert decide(final, proposed) is None


def test_a_user_may_still_kick_a_final_submission():
    assert decide(S.FAILED, S.COMPLETED, by_user=True) == S.COMPLETED
    assert decide(S.REMOVED, S.COMPLETED, by_user=True) == S.COMPLETED
    assert decide(S.FAILED, S.LOCATED, by_user=True) == S.LOCATED
    assert decide(S.LOCATED, S.RUNNING, by_user=True) is None


def test_duplicates_change_nothing():
    for status in S:
        assert decide(status, status) is None


def test_a_failed_recovery_completes():
    assert decide(S.RUNNING, S.FAILED, is_recovery=True) == S.COMPLETED
    assert decide(S.RUNNING, S.FAILED) == S.FAILED


def test_launch_failed_is_not_final_because_slow_launches_report_late():
    assert decide(S.LAUNCH_FAILED, S.RUNNING) == S.RUNNING
    assert decide(S.NEW, S.LAUNCH_FAILED) == S.LAUNCH_FAILED


def test_approval_waits_for_a_person():
    assert decide(S.AWAITING_APPROVAL, S.COMPLETED) is None
    assert decide(S.AWAITING_APPROVAL, S.COMPLETED, by_user=True) == S.COMPLETED
    assert decide(S.AWAITING_APPROVAL, S.REMOVED, by_user=True) == S.REMOVED


@pytest.mark.parametrize(
    "counts, expected",
    [
        ({}, None),
        ({JobState.IDLE: 3}, S.IDLE),
        ({JobState.IDLE: 2, JobState.RUNNING: 1}, S.RUNNING),
        ({JobState.RUNNING: 1, JobState.HELD: 1}, S.HELD),
        ({JobState.COMPLETED: 4, JobState.FAILED: 2}, S.COMPLETED),  # 2*2 > 4 is false
        ({JobState.COMPLETED: 3, JobState.FAILED: 2}, S.FAILED),  # 2*2 > 3
        ({JobState.REMOVED: 3}, S.REMOVED),
        ({JobState.REMOVED: 1, JobState.COMPLETED: 2}, S.COMPLETED),
    ],
)
def test_it_derives_submission_status_from_jobs(counts, expected):
    assert derive_from_jobs(counts) == expected


@pytest.mark.django_db
def test_each_transition_writes_exactly_one_history_row():
    sub = SubmissionFactory()
    assert services.set_status(sub.pk, S.IDLE)
    assert not services.set_status(sub.pk, S.IDLE)  # duplicate: nothing written
    assert services.set_status(sub.pk, S.COMPLETED)
    assert not services.set_status(sub.pk, S.RUNNING)  # regression below Completed
    rows = list(StatusHistory.objects.filter(submission=sub).values_list("status", flat=True))
    assert rows == [S.NEW, S.IDLE, S.COMPLETED]
    sub.refresh_from_db()
    assert sub.status == S.COMPLETED and sub.finished is None


@pytest.mark.django_db
def test_entering_a_final_state_stamps_finished(world):
    sub = SubmissionFactory()
    before = timezone.now()
    assert services.set_status(sub.pk, S.REMOVED, by=world.users["production"], cause="killed")
    sub.refresh_from_db()
    assert sub.finished >= before
    last = sub.history.last()
    assert (last.status, last.user, last.cause) == (S.REMOVED, world.users["production"], "killed")
