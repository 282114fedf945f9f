"""The poll worker's in-memory copy of the job rows it wrote (ingest.MIRROR): used only while
current, never a reason to miss or repeat a change."""

import gc
import threading

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from poms.lib.memory import paused_gc
from submissions import ingest
from submissions.models import Job, JobEvent, JobState, Submission
from submissions.observations import JobObservation
from submissions.services import record_observations
from tests.factories import SubmissionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def empty_mirror():
    ingest.MIRROR.clear()
    yield
    ingest.MIRROR.clear()


@pytest.fixture
def loads(monkeypatch):
    """The submissions whose jobs a poll read back from the database."""
    seen, real = [], ingest.load_jobs

    def spy(ids):
        seen.extend(ids)
        return real(ids)

    monkeypatch.setattr(ingest, "load_jobs", spy)
    return seen


def running(sub, *names):
    return [JobObservation(sub.pk, name, JobState.RUNNING, host="wn1") for name in names]


def completed(sub, name):
    return JobObservation(sub.pk, name, JobState.COMPLETED, exit_code=0, host="wn1")


def test_the_worker_compares_with_its_own_copy_and_skips_unchanged_submissions_unlocked(loads):
    sub = SubmissionFactory(batch_id="7")
    record_observations(running(sub, "7.0", "7.1"))
    assert loads == [sub.pk]  # the first poll in this process reads the rows
    record_observations([completed(sub, "7.0"), *running(sub, "7.1")])
    assert loads == [sub.pk]  # the next one compares with what it wrote
    sub.refresh_from_db()
    assert (sub.jobs_running, sub.jobs_completed) == (1, 1)
    with CaptureQueriesContext(connection) as ctx:
        assert record_observations([completed(sub, "7.0"), *running(sub, "7.1")]) == 0
    assert not [q for q in ctx.captured_queries if "FOR UPDATE" in q["sql"]]
    assert Submission.objects.get(pk=sub.pk).polled > sub.polled


def test_a_copy_made_stale_by_another_writer_is_not_used(loads):
    sub = SubmissionFactory(batch_id="7")
    record_observations(running(sub, "7.0", "7.1"))
    stale = ingest.MIRROR.get(sub.pk, Submission.objects.get(pk=sub.pk).poll_version)
    # Another process polls: 7.0 completed, 7.1 not mentioned.
    ingest.MIRROR.clear()
    record_observations([completed(sub, "7.0")])
    ingest.MIRROR.put(sub.pk, stale.version, stale.jobs, stale.observed)  # this process's old copy
    loads.clear()
    record_observations([completed(sub, "7.0"), completed(sub, "7.1")])
    assert loads == [sub.pk]  # the version moved on: the rows were read back
    events = JobEvent.objects.filter(job__submission=sub, state="completed")
    assert sorted(events.values_list("job__batch_job_id", flat=True)) == ["7.0", "7.1"]  # no repeat for 7.0
    sub.refresh_from_db()
    assert (sub.jobs_running, sub.jobs_completed) == (0, 2)


def test_an_unmentioned_job_is_counted_from_the_copy_as_stored(loads):
    sub = SubmissionFactory(batch_id="7")
    record_observations(running(sub, "7.0", "7.1", "7.2"))
    record_observations([completed(sub, "7.0")])
    record_observations([completed(sub, "7.0"), completed(sub, "7.1")])
    assert loads == [sub.pk]
    sub.refresh_from_db()
    assert (sub.jobs_running, sub.jobs_completed) == (1, 2)
    assert dict(Job.objects.filter(submission=sub).values_list("batch_job_id", "state")) == {
        "7.0": "completed",
        "7.1": "completed",
        "7.2": "running",
    }


def test_a_rolled_back_write_leaves_no_usable_copy(loads, monkeypatch):
    sub = SubmissionFactory(batch_id="7")
    record_observations(running(sub, "7.0"))

    def broken(changed, now):
        raise RuntimeError("database went away")

    monkeypatch.setattr(ingest, "write_jobs", broken)
    with pytest.raises(RuntimeError):
        record_observations([completed(sub, "7.0")])
    monkeypatch.undo()
    loads.clear()
    record_observations([completed(sub, "7.0")])
    assert Job.objects.get(submission=sub).state == "completed"
    assert JobEvent.objects.filter(job__submission=sub, state="completed").count() == 1


def test_the_copy_is_bounded_and_drops_the_least_recently_written_first():
    mirror = ingest.Mirror(limit=5)
    mirror.put(1, 10, {"a": (), "b": (), "c": ()}, [])
    mirror.put(2, 20, {"a": (), "b": ()}, [])
    assert len(mirror) == 5 and mirror.get(1, 10) and mirror.get(2, 20)
    mirror.put(3, 30, {"a": ()}, [])
    assert mirror.get(1, 10) is None and mirror.get(2, 20) and mirror.get(3, 30) and len(mirror) == 3
    mirror.put(2, 21, {"a": (), "b": (), "c": (), "d": (), "e": (), "f": ()}, [])  # larger than the bound
    assert mirror.get(2, 21) is None and mirror.get(2, 20) is None and len(mirror) == 1
    assert mirror.get(3, 31) is None  # another version: not current
    mirror.put(4, 40, {}, [])  # a submission without jobs takes room too
    assert len(mirror) == 2
    mirror.put(5, 0, {"a": ()}, [])  # never written by a poll: nothing to trust
    assert mirror.get(5, 0) is None
    mirror.forget([3, 4])
    assert len(mirror) == 0
    off = ingest.Mirror(limit=0)
    off.put(6, 60, {}, [])
    assert off.get(6, 60) is None and len(off) == 0


def test_jobs_deleted_behind_the_polls_back_fail_one_poll_then_are_written_again(loads):
    sub = SubmissionFactory(batch_id="7")
    record_observations(running(sub, "7.0", "7.1"))
    Job.objects.filter(submission=sub, batch_job_id="7.1").delete()  # not something POMS does
    with pytest.raises(ingest.StaleRows, match="1 of 2 job rows"):
        record_observations([completed(sub, "7.0"), completed(sub, "7.1")])
    assert Job.objects.get(submission=sub, batch_job_id="7.0").state == "running"  # nothing half-written
    loads.clear()
    record_observations([completed(sub, "7.0"), completed(sub, "7.1")])
    assert loads == [sub.pk]  # the suspect copy was forgotten
    assert sorted(Job.objects.filter(submission=sub).values_list("batch_job_id", "state")) == [
        ("7.0", "completed"),
        ("7.1", "completed"),
    ]


def test_no_mirror_at_all_still_records_everything(settings, loads):
    settings.POMS_POLL_MIRROR_JOBS = 0
    sub = SubmissionFactory(batch_id="7")
    record_observations(running(sub, "7.0"))
    record_observations([completed(sub, "7.0")])
    assert loads == [sub.pk, sub.pk] and len(ingest.MIRROR) == 0
    assert Submission.objects.get(pk=sub.pk).jobs_completed == 1


def test_overlapping_pauses_resume_the_collector_when_the_last_one_ends():
    inside, leave = threading.Barrier(2), threading.Event()

    def pause(first):
        with paused_gc():
            inside.wait()
            if first:
                leave.wait()

    first = threading.Thread(target=pause, args=(True,))
    first.start()
    pause(False)  # enters while the first thread is paused, leaves before it
    assert not gc.isenabled()
    leave.set()
    first.join()
    assert gc.isenabled()


@pytest.mark.django_db(transaction=True)
def test_an_unchanged_submission_locked_by_another_poll_is_not_waited_for():
    sub = SubmissionFactory(batch_id="7")
    record_observations(running(sub, "7.0"))
    stamped = Submission.objects.get(pk=sub.pk).polled
    locked, release = threading.Event(), threading.Event()

    def hold_the_row():
        with transaction.atomic():
            Submission.objects.select_for_update().get(pk=sub.pk)
            locked.set()
            release.wait(timeout=30)
        connection.close()

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    try:
        locked.wait(timeout=10)
        done = threading.Event()
        poller = threading.Thread(
            target=lambda: (record_observations(running(sub, "7.0")), connection.close(), done.set())
        )
        poller.start()
        assert done.wait(timeout=10), "the unchanged poll waited on the other transaction's lock"
    finally:
        release.set()
        holder.join()
    assert Submission.objects.get(pk=sub.pk).polled == stamped  # the lock holder stamps it, not this poll


def test_the_collector_is_paused_only_while_a_poll_is_written():
    assert gc.isenabled()
    with pytest.raises(ValueError), paused_gc():
        assert not gc.isenabled()
        raise ValueError
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # a caller's own pause is left alone
    finally:
        gc.enable()


def test_a_poll_that_changes_no_job_keeps_the_version_so_other_copies_stay_current(loads):
    sub = SubmissionFactory(batch_id="7")
    record_observations(running(sub, "7.0", "7.1"))
    version = Submission.objects.get(pk=sub.pk).poll_version
    assert version != 0
    ingest.MIRROR.clear()  # another process, which has not seen this submission yet
    loads.clear()
    assert record_observations(list(reversed(running(sub, "7.0", "7.1")))) == 0
    assert loads == [sub.pk]
    assert Submission.objects.get(pk=sub.pk).poll_version == version
    assert ingest.MIRROR.get(sub.pk, version) is not None  # read under the lock: current
    record_observations([completed(sub, "7.0"), *running(sub, "7.1")])
    assert Submission.objects.get(pk=sub.pk).poll_version != version
