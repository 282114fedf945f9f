"""The poll worker's in-memory copy of the job rows it wrote (ingest.MIRROR): used only while
current, never a reason to miss or repeat a change."""

import gc

import pytest
from django.db import connection
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


def test_no_mirror_at_all_still_records_everything(settings, loads):
    settings.POMS_POLL_MIRROR_JOBS = 0
    sub = SubmissionFactory(batch_id="7")
    record_observations(running(sub, "7.0"))
    record_observations([completed(sub, "7.0")])
    assert loads == [sub.pk, sub.pk] and len(ingest.MIRROR) == 0
    assert Submission.objects.get(pk=sub.pk).jobs_completed == 1


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
