"""record_observations(): only changes are written, in bulk, idempotently, concurrency-safe."""

import pytest

from submissions import ingest
from submissions.models import Job, JobEvent, JobState, StatusHistory, Submission
from submissions.models import Status as S
from submissions.observations import JobObservation
from submissions.services import record_observations
from tests.concurrency import run_at_once
from tests.factories import SubmissionFactory

pytestmark = pytest.mark.django_db


def obs(sub, n, state, **extra):
    return [JobObservation(sub.pk, f"7.{i}", state, **extra) for i in range(n)]


def history(sub):
    return list(StatusHistory.objects.filter(submission=sub).values_list("status", flat=True))


def test_it_creates_jobs_events_and_one_transition():
    sub = SubmissionFactory(batch_id="7")
    record_observations(obs(sub, 3, JobState.IDLE))
    sub.refresh_from_db()
    assert sub.status == S.IDLE and sub.jobs_idle == 3
    assert Job.objects.filter(submission=sub).count() == 3
    assert JobEvent.objects.filter(job__submission=sub, state="idle").count() == 3
    assert history(sub) == [S.NEW, S.IDLE]


def test_a_repeated_observation_writes_nothing(django_assert_max_num_queries):
    sub = SubmissionFactory(batch_id="7")
    batch = obs(sub, 5, JobState.RUNNING, host="node1")
    record_observations(batch)
    events = JobEvent.objects.count()
    changed = record_observations(batch)
    assert changed == 0
    assert JobEvent.objects.count() == events
    assert history(sub) == [S.NEW, S.RUNNING]


def test_it_records_exit_codes_and_derives_failed():
    sub = SubmissionFactory(batch_id="7")
    record_observations(obs(sub, 3, JobState.RUNNING))
    done = [
        JobObservation(sub.pk, "7.0", JobState.COMPLETED, exit_code=0),
        JobObservation(sub.pk, "7.1", JobState.FAILED, exit_code=65),
        JobObservation(sub.pk, "7.2", JobState.FAILED, exit_code=137),
    ]
    record_observations(done)
    sub.refresh_from_db()
    assert sub.status == S.FAILED and sub.finished is not None
    assert dict(Job.objects.filter(submission=sub).values_list("batch_job_id", "exit_code")) == {
        "7.0": 0,
        "7.1": 65,
        "7.2": 137,
    }
    assert history(sub) == [S.NEW, S.RUNNING, S.FAILED]


def test_jobs_not_mentioned_keep_their_state_in_the_counts():
    sub = SubmissionFactory(batch_id="7")
    record_observations(obs(sub, 2, JobState.RUNNING))
    record_observations([JobObservation(sub.pk, "7.0", JobState.COMPLETED, exit_code=0)])
    sub.refresh_from_db()
    assert (sub.jobs_running, sub.jobs_completed, sub.status) == (1, 1, S.RUNNING)


def test_query_count_does_not_grow_with_jobs(django_assert_max_num_queries):
    subs = [SubmissionFactory(batch_id=str(i)) for i in range(20)]
    many = [JobObservation(s.pk, f"{s.pk}.{i}", JobState.RUNNING) for s in subs for i in range(50)]
    with django_assert_max_num_queries(12):
        record_observations(many)
    assert Job.objects.count() == 1000


def test_a_completed_submission_does_not_go_back():
    sub = SubmissionFactory(batch_id="7", status=S.COMPLETED)
    record_observations(obs(sub, 2, JobState.RUNNING))
    sub.refresh_from_db()
    assert sub.status == S.COMPLETED
    assert history(sub) == [S.COMPLETED]


def test_a_failing_recovery_is_completed():
    parent = SubmissionFactory(batch_id="6")
    sub = SubmissionFactory(batch_id="7", stage=parent.stage, recovery_parent=parent)
    record_observations(obs(sub, 2, JobState.FAILED, exit_code=1))
    sub.refresh_from_db()
    assert sub.status == S.COMPLETED


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_polls_write_each_change_once():
    subs = [SubmissionFactory(batch_id=str(i)) for i in range(10)]
    batch = [JobObservation(s.pk, f"{s.pk}.{i}", JobState.RUNNING) for s in subs for i in range(20)]
    run_at_once(lambda: record_observations(batch))
    assert Job.objects.count() == 200
    assert JobEvent.objects.count() == 200
    assert StatusHistory.objects.filter(status=S.RUNNING).count() == 10
    assert set(Submission.objects.values_list("status", flat=True)) == {S.RUNNING}


def test_odd_text_from_a_batch_system_is_stored_exactly():
    sub = SubmissionFactory(batch_id="7")
    reason = 'held: "quota"\tline\nnext \\N back\\slash — ünïcode\n\\.\n,"\rcr\r\ncrlf'
    odd = [
        JobObservation(sub.pk, "7.0", JobState.HELD, hold_reason=reason, host="wn\t01\r"),
        JobObservation(sub.pk, "7.1\r", JobState.RUNNING, stdout_path="\\.", stderr_path="NULL"),
    ]
    record_observations(odd)
    job = Job.objects.get(submission=sub, batch_job_id="7.0")
    assert (job.hold_reason, job.host) == (reason, "wn\t01\r")
    assert Job.objects.filter(submission=sub, batch_job_id="7.1\r", stdout_path="\\.", stderr_path="NULL").exists()
    assert record_observations(odd) == 0
    ingest.MIRROR.clear()  # compared with the rows as read back: the same
    assert record_observations(odd) == 0


def test_over_long_text_from_a_batch_system_is_cut_to_its_column_not_refused():
    sub = SubmissionFactory(batch_id="7")
    long = JobObservation(sub.pk, "7.0", JobState.HELD, hold_reason="r" * 1000, host="h" * 300, stdout_path="/" * 900)
    record_observations([long, JobObservation(sub.pk, "7.1", JobState.RUNNING)])
    job = Job.objects.get(submission=sub, batch_job_id="7.0")
    assert (len(job.hold_reason), len(job.host), len(job.stdout_path)) == (300, 200, 500)
    sub.refresh_from_db()
    assert (sub.jobs_held, sub.jobs_running, sub.status) == (1, 1, S.HELD)
    released = [
        JobObservation(sub.pk, "7.0", JobState.RUNNING, host="h" * 300),
        JobObservation(sub.pk, "7.1", "running"),
    ]
    record_observations(released)
    assert Job.objects.get(submission=sub, batch_job_id="7.0").state == "running"
    ingest.MIRROR.clear()
    assert record_observations(list(reversed(released))) == 0  # the cut text is not a change next time


def test_nan_from_a_batch_system_is_stored_as_null_and_is_no_change_next_time():
    sub = SubmissionFactory(batch_id="7")
    nan = [JobObservation(sub.pk, "7.0", JobState.RUNNING, cpu_seconds=float("nan"), memory_mb=12.5)]
    record_observations(nan)
    assert Job.objects.filter(submission=sub, cpu_seconds=None, memory_mb=12.5).count() == 1
    assert record_observations(list(nan)) == 0
    ingest.MIRROR.clear()
    assert record_observations(list(nan)) == 0


def test_a_job_listed_twice_in_one_answer_is_written_once_as_last_listed():
    sub = SubmissionFactory(batch_id="7")
    twice = [JobObservation(sub.pk, "7.0", JobState.IDLE), JobObservation(sub.pk, "7.0", JobState.RUNNING, host="n")]
    assert record_observations(twice) == 2  # one job, one transition of the submission
    job = Job.objects.get(submission=sub)
    assert (job.state, job.host) == ("running", "n")
    assert list(JobEvent.objects.filter(job=job).values_list("state", flat=True)) == ["running"]
    again = [
        JobObservation(sub.pk, "7.0", JobState.COMPLETED),
        JobObservation(sub.pk, "7.0", JobState.COMPLETED, cpu_seconds=5.0),
    ]
    record_observations(again)
    job.refresh_from_db()
    assert (job.state, job.cpu_seconds) == ("completed", 5.0)
    assert list(JobEvent.objects.filter(job=job).order_by("id").values_list("state", flat=True)) == [
        "running",
        "completed",
    ]
    ingest.MIRROR.clear()
    assert record_observations(again) == 0
