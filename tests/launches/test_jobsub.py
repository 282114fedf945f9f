"""The jobsub_lite adapter, against fake jobsub_* executables (tests/fakes/jobsub/) that keep a small
job table and print what jobsub_lite and HTCondor print."""

import json
import os
import re
import subprocess
import sys
from datetime import UTC
from pathlib import Path

import pytest

from launches import services
from launches.batch import BACKENDS, BatchError, Target
from launches.batch.jobsub import JobsubBatch, observe, parse_ads
from launches.control import control
from poms.permissions import actor_for
from submissions.models import JobState, Status
from tests.factories import JobFactory, SubmissionFactory

pytestmark = pytest.mark.django_db

FAKES = Path(__file__).resolve().parents[1] / "fakes" / "jobsub"
SCHEDD = "jobsub01.fnal.gov"
HL = "=-" * 30

# What jobsub_submit prints on success (lib/condor.py: condor_submit's stdout, then the job id
# between highlight lines), as captured from the fake and checked byte for byte below.
SUBMIT_OUTPUT = (
    "Submitting job(s)...\n3 job(s) submitted to cluster 23733516.\n"
    f"\n{HL}\n\nUse job id 23733516.0@jobsub02.fnal.gov to retrieve output\n{HL}\n\n\n"
)
# Old jobsub_client said the id twice; POMS's slurp_jobid keys on the "Use job id" line.
OLD_CLIENT_OUTPUT = (
    "JobsubJobId of first job: 12345.0@fifebatch1.fnal.gov\nUse job id 12345.0@fifebatch1.fnal.gov to retrieve output\n"
)
# jobsub_q -json over two schedds: one condor_q answer each, back to back.
Q_JSON = """\
[
{
  "ClusterId": 23733516,
  "GlobalJobId": "jobsub02.fnal.gov#23733516.0#1700000000",
  "JobStartDate": 1700000100,
  "JobStatus": 2,
  "MATCH_EXP_JOB_GLIDEIN_Site": "FermiGrid",
  "POMS4_SUBMISSION_ID": 42,
  "ProcId": 0,
  "RemoteHost": "slot1_3@fnpc1234.fnal.gov",
  "RemoteUserCpu": 0.0,
  "RemoteWallClockTime": 0.0
}
,
{
  "ClusterId": 23733516,
  "GlobalJobId": "jobsub02.fnal.gov#23733516.1#1700000000",
  "HoldReason": "Job has gone over memory limit of 2048 megabytes.",
  "JobStatus": 5,
  "POMS4_SUBMISSION_ID": 42,
  "ProcId": 1
}
]
[
{
  "ClusterId": 501,
  "CompletionDate": 1700003700,
  "ExitCode": 3,
  "GlobalJobId": "jobsub03.fnal.gov#501.0#1700000000",
  "JobStartDate": 1700000100,
  "JobStatus": 4,
  "LastRemoteHost": "slot1_1@fnpc77.fnal.gov",
  "POMS4_SUBMISSION_ID": "43",
  "ProcId": 0,
  "RemoteSysCpu": 10.0,
  "RemoteUserCpu": 3000.0,
  "RemoteWallClockTime": 3600.0,
  "ResidentSetSize_RAW": 1048576
}
]
"""


class FakeJobsub:
    """Handle on the fakes' job table: drive jobs, inject failures, read what was called."""

    def __init__(self, state, backend, monkeypatch):
        self.state, self.backend, self.monkeypatch = state, backend, monkeypatch

    def run(self, *argv, env=None):
        return subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=30)

    def set(self, *job_ids, **attrs):
        values = [f"{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in attrs.items()]
        done = self.run("fake_jobsub_set", *job_ids, *values)
        assert done.returncode == 0, done.stderr

    def submit(self, sub, n=2, wrapper=True, **env):
        """What a launch through the POMS wrapper does: jobsub_submit with the POMS variables set."""
        env = {"POMS_TASK_ID": str(sub.pk), "POMS4_SUBMISSION_ID": str(sub.pk), **env}
        if not wrapper:
            env["FAKE_JOBSUB_NO_POMS_WRAPPER"] = "1"
        done = self.run("jobsub_submit", "-G", "nova", "-N", str(n), "file:///nova/app/gen.sh", env=env)
        batch_id = self.backend.parse_batch_id(done.stdout)
        assert batch_id, done.stdout + done.stderr
        sub.batch_id = batch_id
        sub.save(update_fields=["batch_id"])
        return batch_id.split("@")[0]

    def fail(self, spec):
        if spec:
            self.monkeypatch.setenv("FAKE_JOBSUB_FAIL", spec)
        else:
            self.monkeypatch.delenv("FAKE_JOBSUB_FAIL", raising=False)

    def calls(self, cmd):
        path = self.state / "calls.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [c["args"] for c in map(json.loads, lines) if c["cmd"] == cmd]

    def table(self):
        return json.loads((self.state / "state.json").read_text())


@pytest.fixture
def jobsub(monkeypatch, tmp_path):
    state = tmp_path / "jobsub"
    # The fakes' `#!/usr/bin/env python3` finds this interpreter first (a pyenv shim costs 0.1 s a call).
    monkeypatch.setenv("PATH", f"{FAKES}:{Path(sys.executable).parent}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_JOBSUB_STATE", str(state))
    monkeypatch.setenv("JOBSUB_FETCHLOG_URL", "https://fetchlog.invalid")
    for var in ("FAKE_JOBSUB_FAIL", "FAKE_JOBSUB_SCHEDD", "GROUP", "JOBSUB_GROUP", "POMS_TASK_ID"):
        monkeypatch.delenv(var, raising=False)
    backend = JobsubBatch(group="nova", timeout=10)
    monkeypatch.setitem(BACKENDS, "jobsub", backend)
    return FakeJobsub(state, backend, monkeypatch)


def actor(world):
    return actor_for(world.users["production"], world.experiment)


def jobsub_stage(world, fake, n=3, setup=""):
    """The production stage, its job type now a jobsub_submit of `n` jobs."""
    stage = world.production_stage
    job_type = stage.job_type
    job_type.batch_system = "jobsub"
    job_type.launch_script = f"jobsub_submit -G %(group)s -N {n} file:///nova/app/gen.sh"
    job_type.definition_parameters = []
    job_type.save()
    # The local runner passes only a clean environment: the login setup points at the fakes' table.
    stage.login_setup.launch_setup = f"export FAKE_JOBSUB_STATE={fake.state}\n{setup}"
    stage.login_setup.save()
    return stage


def launched(world, fake, n=3):
    sub = services.launch_stage(jobsub_stage(world, fake, n), actor=actor(world))
    assert services.run_launch(sub.pk) is True
    sub.refresh_from_db()
    return sub, sub.batch_id.split("@")[0]


def polled(sub):
    services.poll_batch_systems()
    sub.refresh_from_db()
    return sub


def jobs_of(sub):
    return {j.batch_job_id: j for j in sub.jobs.all()}


# -- parsers on captured output ------------------------------------------------------------------


def test_it_stores_the_job_id_as_poms_does():
    backend = JobsubBatch()
    assert backend.parse_batch_id(SUBMIT_OUTPUT) == "23733516@jobsub02.fnal.gov"
    assert backend.parse_batch_id(OLD_CLIENT_OUTPUT) == "12345@fifebatch1.fnal.gov"
    twice = SUBMIT_OUTPUT + SUBMIT_OUTPUT.replace("23733516", "23733517")
    assert backend.parse_batch_id(twice) == "23733517@jobsub02.fnal.gov"  # the last one, as slurp_jobid
    failed = f"Submitting job(s)\n{HL}\n\nError: condor_submit exited with failed status code 1\n\n{HL}\n"
    assert backend.parse_batch_id(failed) is None


def test_it_reads_one_json_array_per_schedd_and_maps_each_job():
    ads = parse_ads(Q_JSON)
    assert [(a["ClusterId"], a["ProcId"]) for a in ads] == [(23733516, 0), (23733516, 1), (501, 0)]
    running, held, failed = (observe(ad, 42, ad["GlobalJobId"].split("#")[0]) for ad in ads)
    assert running.batch_job_id == "23733516.0@jobsub02.fnal.gov" and running.state == JobState.RUNNING
    assert running.host == "fnpc1234.fnal.gov (FermiGrid)" and running.started.tzinfo == UTC
    assert running.wall_seconds is None and running.ended is None  # condor adds wall time when a run stops
    assert (held.state, held.hold_reason) == (JobState.HELD, "Job has gone over memory limit of 2048 megabytes.")
    assert (failed.state, failed.exit_code, failed.host) == (JobState.FAILED, 3, "fnpc77.fnal.gov")
    assert (failed.wall_seconds, failed.cpu_seconds, failed.memory_mb) == (3600.0, 3010.0, 1024.0)
    assert (failed.ended - failed.started).total_seconds() == 3600
    assert parse_ads("") == [] and parse_ads("\n") == []  # condor_q prints nothing when nothing matches


@pytest.mark.parametrize(
    "status, extra, state, exit_code",
    [
        (1, {}, JobState.IDLE, None),
        (2, {}, JobState.RUNNING, None),
        (6, {}, JobState.RUNNING, None),  # transferring output
        (5, {"HoldReason": "via condor_hold"}, JobState.HELD, None),
        (7, {}, JobState.HELD, None),  # suspended
        (3, {"RemoveReason": "via condor_rm"}, JobState.REMOVED, None),
        (4, {"ExitCode": 0}, JobState.COMPLETED, 0),
        (4, {"ExitCode": 2}, JobState.FAILED, 2),
        (4, {"ExitBySignal": True, "ExitSignal": 9}, JobState.FAILED, None),
    ],
)
def test_each_condor_job_status_maps_to_a_job_state(status, extra, state, exit_code):
    ad = {"ClusterId": 7, "ProcId": 0, "JobStatus": status, "GlobalJobId": f"{SCHEDD}#7.0#1", **extra}
    obs = observe(ad, 1, SCHEDD)
    assert (obs.state, obs.exit_code) == (state, exit_code)


@pytest.mark.parametrize(
    "text",
    ['[\n{\n  "ClusterId": 7000', '{"ClusterId": 1}', '[{"ClusterId": 1, "ProcId": 0}]', "Error: schedd busy"],
)
def test_unreadable_json_is_a_batch_error(text):
    with pytest.raises(BatchError, match="jobsub_q"):
        parse_ads(text, "jobsub_q")


# -- the fakes print what jobsub prints ------------------------------------------------------------


POMS_ENV = {"POMS_TASK_ID": "9", "POMS4_SUBMISSION_ID": "9"}


def test_the_fakes_speak_jobsub(jobsub):
    done = jobsub.run("jobsub_submit", "-G", "nova", "-N", "3", "file:///nova/app/gen.sh", env=POMS_ENV)
    cluster = jobsub.table()["next_cluster"][SCHEDD] - 1
    assert done.returncode == 0
    assert done.stdout == SUBMIT_OUTPUT.replace("23733516", str(cluster)).replace("jobsub02", "jobsub01")
    answer = jobsub.run("jobsub_q", "-G", "nova", "-json", "-allusers", "-attributes", "ClusterId,ProcId").stdout
    assert answer.startswith(f'[\n{{\n  "ClusterId": {cluster},\n  "ProcId": 0\n}}\n,\n{{\n')
    assert answer.endswith('  "ProcId": 2\n}\n]\n')
    nothing = jobsub.run("jobsub_q", "-G", "nova", "-json", "--constraint", "POMS4_SUBMISSION_ID==999")
    assert (nothing.returncode, nothing.stdout) == (0, "")
    rm = jobsub.run("jobsub_rm", "-G", "nova", "--constraint", "POMS4_SUBMISSION_ID==999")
    assert rm.returncode == 0  # jobsub relays condor's complaint but does not fail
    assert "Couldn't find/remove all jobs matching constraint (POMS4_SUBMISSION_ID==999)" in rm.stderr
    hold = jobsub.run("jobsub_hold", "-G", "nova", "--constraint", "POMS4_SUBMISSION_ID==9")
    assert hold.stdout == "All jobs matching constraint (POMS4_SUBMISSION_ID==9) have been held\n"
    no_group = jobsub.run("jobsub_q", "-json")
    assert no_group.returncode == 1 and "needs -G group or $GROUP in the environment." in no_group.stderr


# -- the whole path: launch → batch id → poll → record_observations -------------------------------


def test_a_launch_is_polled_from_idle_through_running_to_completed(world, jobsub):
    sub, cluster = launched(world, jobsub)
    assert sub.batch_id == f"{cluster}@{SCHEDD}"
    assert f"Use job id {cluster}.0@{SCHEDD} to retrieve output" in Path(sub.launch_log).read_text()
    ids = [f"{cluster}.{p}@{SCHEDD}" for p in range(3)]

    assert polled(sub).status == Status.IDLE and sub.jobs_idle == 3
    assert sorted(jobs_of(sub)) == ids

    jobsub.set(f"{cluster}@{SCHEDD}", JobStatus=2)
    assert polled(sub).status == Status.RUNNING and sub.jobs_running == 3
    job = jobs_of(sub)[ids[0]]
    assert job.host == "fnpc9000.fnal.gov (FermiGrid)" and job.started.tzinfo is not None

    jobsub.set(ids[0], JobStatus=4, RemoteWallClockTime=3600.0)
    jobsub.set(ids[1], JobStatus=4, ExitCode=0)
    jobsub.set(ids[2], JobStatus=4, ExitCode=3)
    assert jobsub.table()["queue"] == []  # finished jobs are known to jobsub_history only
    assert polled(sub).status == Status.COMPLETED  # one failure of three: 1 × 2 > 2 is false
    jobs = jobs_of(sub)
    assert [(jobs[i].state, jobs[i].exit_code) for i in ids] == [("completed", 0), ("completed", 0), ("failed", 3)]
    assert jobs[ids[0]].wall_seconds == 3600.0 and jobs[ids[0]].ended.tzinfo is not None
    assert list(jobs[ids[2]].events.values_list("state", flat=True)) == ["idle", "running", "failed"]
    assert list(sub.history.values_list("status", flat=True)) == [
        Status.NEW,
        Status.IDLE,
        Status.RUNNING,
        Status.COMPLETED,
    ]
    assert len(jobsub.calls("jobsub_q")) == len(jobsub.calls("jobsub_history")) == 3  # one of each per poll


def test_one_query_serves_every_submission_and_failures_make_failed(world, jobsub):
    first, c1 = launched(world, jobsub)
    second, c2 = launched(world, jobsub)
    assert c1 != c2
    services.poll_batch_systems()
    [q_args] = jobsub.calls("jobsub_q")
    assert q_args[:4] == ["-G", "nova", "-json", "-allusers"]
    assert f"member(POMS4_SUBMISSION_ID, {{{first.pk}, {second.pk}}})" in q_args[q_args.index("--constraint") + 1]
    assert len(jobsub.calls("jobsub_history")) == 1

    jobsub.set(f"{c1}@{SCHEDD}", JobStatus=4)
    jobsub.set(f"{c2}.0@{SCHEDD}", JobStatus=4)
    jobsub.set(f"{c2}.1@{SCHEDD}", f"{c2}.2@{SCHEDD}", JobStatus=4, ExitCode=1)
    services.poll_batch_systems()
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.jobs_completed) == (Status.COMPLETED, 3)
    assert (second.status, second.jobs_completed, second.jobs_failed) == (Status.FAILED, 1, 2)


def test_hold_release_and_kill_change_what_jobsub_reports(world, jobsub):
    sub, cluster = launched(world, jobsub, n=2)
    jobsub.set(f"{cluster}@{SCHEDD}", JobStatus=2)
    assert polled(sub).status == Status.RUNNING

    control([sub], "hold", actor=actor(world))  # polls afterwards
    sub.refresh_from_db()
    assert sub.status == Status.HELD and sub.jobs_held == 2
    assert all(re.fullmatch(r"via condor_hold \(by user \S+\)", j.hold_reason) for j in sub.jobs.all())
    assert jobsub.calls("jobsub_hold") == [
        ["-G", "nova", "--constraint", f"POMS4_SUBMISSION_ID=={sub.pk}"],
        ["-G", "nova", "--jobid", f"{cluster}@{SCHEDD}"],  # for jobs without the POMS ClassAd
    ]

    control([sub], "release", actor=actor(world))
    sub.refresh_from_db()
    assert sub.status == Status.IDLE and sub.jobs_idle == 2  # condor releases to Idle, to be matched again
    assert {j.hold_reason for j in sub.jobs.all()} == {""}

    control([sub], "kill", actor=actor(world))
    sub.refresh_from_db()
    assert sub.status == Status.REMOVED
    assert jobsub.table()["queue"] == []
    removed = jobsub.backend.poll([Target(sub.pk, sub.batch_id)])
    assert [o.state for o in removed] == ["removed", "removed"]
    assert removed[0].hold_reason.startswith("via condor_rm")


def test_jobs_without_the_poms_classad_are_found_by_cluster_on_their_schedd(world, jobsub):
    ours = SubmissionFactory(stage=world.production_stage, batch_system="jobsub")
    cluster = jobsub.submit(ours, n=2, wrapper=False)
    # The same cluster number on another schedd is somebody else's job.
    jobsub.submit(
        SubmissionFactory(stage=world.production_stage), n=1, wrapper=False, FAKE_JOBSUB_SCHEDD="jobsub02.fnal.gov"
    )
    answer = jobsub.run("jobsub_q", "-G", "nova", "-json", "--constraint", f"ClusterId == {cluster}").stdout
    assert answer.count("[\n") == 2  # both schedds answered: two arrays back to back
    observed = jobsub.backend.poll([Target(ours.pk, ours.batch_id)])
    assert [o.batch_job_id for o in observed] == [f"{cluster}.0@{SCHEDD}", f"{cluster}.1@{SCHEDD}"]


# -- errors: the poll records why and changes nothing ---------------------------------------------


@pytest.mark.parametrize(
    "failure, message",
    [
        ("jobsub_q:error", "jobsub_q failed (exit 1): Error: HTCondorIOError: Failed communication with collector."),
        ("jobsub_q:garbled", "jobsub_q printed something that is not JSON"),
        ("jobsub_q:hang", "jobsub_q did not answer within 1 s (killed)"),
        ("jobsub_q:schedd_down", "jobsub_q: a schedd did not answer: Failed to fetch ads from: <131.225"),
        ("jobsub_history:garbled", "jobsub_history printed something that is not JSON"),
    ],
)
def test_a_failed_poll_records_the_error_and_changes_nothing(world, jobsub, failure, message):
    sub = SubmissionFactory(stage=world.production_stage, batch_system="jobsub")
    cluster = jobsub.submit(sub, n=2)
    assert polled(sub).status == Status.IDLE
    before = list(sub.history.values_list("status", flat=True))
    jobsub.set(f"{cluster}@{SCHEDD}", JobStatus=2)  # the jobs moved on; we cannot see it
    jobsub.fail(failure)
    jobsub.backend._timeout = 1

    assert polled(sub).status == Status.IDLE and sub.jobs_idle == 2
    assert message in sub.poll_error  # poll_batch_systems records only a BatchError's message
    assert list(sub.history.values_list("status", flat=True)) == before
    assert {j.state for j in sub.jobs.all()} == {"idle"}

    jobsub.fail(None)
    assert polled(sub).status == Status.RUNNING and sub.poll_error == ""


def test_a_refused_hold_is_an_error_and_changes_nothing(world, jobsub):
    sub, _cluster = launched(world, jobsub, n=1)
    assert polled(sub).status == Status.IDLE
    jobsub.fail("jobsub_hold:error")
    with pytest.raises(services.LaunchError, match="jobsub batch system refused to hold: jobsub_hold failed .exit 1."):
        control([sub], "hold", actor=actor(world))
    assert polled(sub).status == Status.IDLE


def test_a_failed_submit_is_a_launch_failure_with_the_log_kept(world, jobsub):
    stage = jobsub_stage(world, jobsub, setup="export FAKE_JOBSUB_FAIL=jobsub_submit:error")
    sub = services.launch_stage(stage, actor=actor(world))
    assert services.run_launch(sub.pk) is False
    sub.refresh_from_db()
    # jobsub_submit exits 0 even then: it is the missing job id that says the launch failed.
    assert (sub.status, sub.launch_exit_code, sub.batch_id) == (Status.LAUNCH_FAILED, 0, "")
    assert "Error: condor_submit exited with failed status code 1" in Path(sub.launch_log).read_text()
    assert sub.history.last().cause == "launch failed: no job id"


def test_the_group_comes_from_the_constructor_the_setting_or_the_experiment(world, jobsub, settings):
    sub = SubmissionFactory(stage=world.production_stage, batch_system="jobsub")
    jobsub.submit(sub, n=1)
    with pytest.raises(BatchError, match=r"needs -G group or \$GROUP in the environment"):
        JobsubBatch().poll([Target(sub.pk, sub.batch_id)])  # no group anywhere: jobsub's own error
    # The usual case: each submission's experiment is its group, one query per group.
    other = SubmissionFactory(stage=world.production_stage, batch_system="jobsub")
    jobsub.submit(other, n=1)
    before = len(jobsub.calls("jobsub_q"))
    found = JobsubBatch().poll([Target(sub.pk, sub.batch_id, "nova"), Target(other.pk, other.batch_id, "dune")])
    groups = sorted(call[1] for call in jobsub.calls("jobsub_q")[before:])
    assert groups == ["dune", "nova"] and [o.submission_id for o in found] == [sub.pk]  # jobs are nova's
    settings.POMS_JOBSUB_GROUP, settings.POMS_JOBSUB_ROLE = "nova", "Production"
    assert [o.state for o in JobsubBatch().poll([Target(sub.pk, sub.batch_id, "dune")])] == ["idle"]
    assert jobsub.calls("jobsub_q")[-1][:4] == ["-G", "nova", "--role", "Production"]


# -- logs ----------------------------------------------------------------------------------------


def test_fetch_log_unpacks_a_jobs_sandbox(world, jobsub, tmp_path):
    sub = SubmissionFactory(stage=world.production_stage, batch_system="jobsub")
    cluster = jobsub.submit(sub, n=2)
    jobsub.set(f"{cluster}.0@{SCHEDD}", JobStatus=4)
    files = jobsub.backend.fetch_log(sub.batch_id, tmp_path / "logs")  # <cluster>@<schedd> → its .0 job
    args = jobsub.calls("jobsub_fetchlog")[-1]
    assert args[:5] == ["-G", "nova", "--jobid", f"{cluster}.0@{SCHEDD}", "--destdir"]
    assert not list((tmp_path / "logs").glob(".fetchlog-*"))  # the scratch directory is gone
    names = sorted(p.name for p in files)
    assert names[-2:] == ["simple.cmd", "simple.sh"] and [n.rsplit(".", 1)[1] for n in names[:3]] == [
        "err",
        "log",
        "out",
    ]
    out = next(p for p in files if p.suffix == ".out")
    assert out.read_text() == f"fake job output of {cluster}.0@{SCHEDD}\n"
    assert jobsub.backend.fetch_log(f"{cluster}.1@{SCHEDD}", tmp_path / "logs")  # a queued job too
    with pytest.raises(BatchError, match="404 Client Error"):
        jobsub.backend.fetch_log(f"999.0@{SCHEDD}", tmp_path / "logs")
    with pytest.raises(BatchError, match="not a jobsub job id"):
        jobsub.backend.fetch_log("12345", tmp_path / "logs")


def test_the_job_table_fetches_a_jobsub_jobs_output_once(world, jobsub):
    from django.urls import reverse

    sub, cluster = launched(world, jobsub, n=1)
    jobsub.set(f"{cluster}.0@{SCHEDD}", JobStatus=4)
    job = polled(sub).jobs.get()
    client = world.client("production")
    page = client.get(reverse("launches:job_output", args=[job.pk, "stdout"])).content.decode()
    assert f"fake job output of {cluster}.0@{SCHEDD}" in page
    client.get(reverse("launches:job_output", args=[job.pk, "stderr"]))
    assert len(jobsub.calls("jobsub_fetchlog")) == 1  # fetched once, then read from the log root
    jobsub.monkeypatch.setenv("FAKE_JOBSUB_FAIL", "jobsub_fetchlog:error")
    other = SubmissionFactory(stage=world.production_stage, batch_system="jobsub", batch_id=f"999@{SCHEDD}")
    ghost = JobFactory(submission=other, batch_job_id=f"999.0@{SCHEDD}")
    assert (
        "Could not fetch the output"
        in client.get(reverse("launches:job_output", args=[ghost.pk, "stdout"])).content.decode()
    )
