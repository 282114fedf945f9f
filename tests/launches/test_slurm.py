"""The Slurm adapter against a real single-node cluster (started by scripts/slurm.py), plus its
parsers on output captured from that cluster (Slurm 22.05, squeue --json = OpenAPI v0.0.38)."""

import importlib.util
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.conf import settings

from launches import control, services
from launches.batch import BACKENDS, BatchError, Target
from launches.batch.slurm import (
    SlurmBatch,
    exit_code_from_pair,
    exit_code_from_status,
    expand_output_path,
    expand_tasks,
    parse_jobcomp_line,
)
from poms.permissions import actor_for
from submissions.models import Job, Status
from tests.factories import JobFactory, SubmissionFactory

from .helpers import wait_for

pytestmark = pytest.mark.django_db

SETUP_SCRIPT = Path(settings.BASE_DIR) / "scripts" / "slurm.py"


def _setup_module():
    spec = importlib.util.spec_from_file_location("poms_slurm_setup", SETUP_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cluster():
    """The real cluster. If it cannot be started the tests fail, with the reason: never skip."""
    setup = _setup_module()
    try:
        setup.ensure_slurm()
    except Exception as exc:  # noqa: BLE001 - any failure to start is reported as such
        pytest.fail(f"could not start the single-node Slurm cluster: {exc}", pytrace=False)
    return setup


@pytest.fixture
def backend(monkeypatch):
    if not isinstance(BACKENDS.get("slurm"), SlurmBatch):
        monkeypatch.setitem(BACKENDS, "slurm", SlurmBatch())
    return BACKENDS["slurm"]


@pytest.fixture
def real(cluster, backend, settings):
    """The adapter reading the real cluster's jobcomp log."""
    settings.POMS_SLURM_JOBCOMP_LOG = cluster.JOBCOMP_LOG
    return backend


def actor(world):
    return actor_for(world.users["production"], world.experiment)


def slurm_stage(world, tmp_path, body, sbatch_options):
    """The production stage's job type launches `body` as a Slurm array: the normal launch path."""
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/bash\n{body}\n")
    script.chmod(0o755)
    job_type = world.production_stage.job_type
    job_type.batch_system = "slurm"
    # %% because the launch script is a POMS %-template; sbatch sees %A_%a.
    job_type.launch_script = f"sbatch {sbatch_options} -o {tmp_path}/out-%%A_%%a.log {script}"
    job_type.definition_parameters = []
    job_type.save()
    return world.production_stage


def act(world, sub, action):
    """A user's Hold / Release / Kill button on one submission."""
    control.control(control.affected("submission", sub), action, actor=actor(world))


def launch(world):
    sub = services.launch_stage(world.production_stage, actor=actor(world))
    launched = services.run_launch(sub.pk)
    sub.refresh_from_db()
    assert launched, open(sub.launch_log).read()
    assert sub.batch_id.isdigit() and sub.batch_system == "slurm"
    return sub


def polled(sub):
    services.poll_batch_systems(submission_ids=[sub.pk])
    sub.refresh_from_db()
    return sub


def jobs_of(sub):
    return list(Job.objects.filter(submission=sub).order_by("batch_job_id"))


def fake_command(tmp_path, monkeypatch, name, body):
    """A stand-in for a Slurm command, first on PATH."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir(exist_ok=True)
    path = bindir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")


EMPTY_QUEUE = '{"meta": {}, "errors": [], "jobs": []}'


# --- the real cluster, through launch_stage → run_launch → poll_batch_systems ------------------


def test_ensure_slurm_is_idempotent_and_fast(cluster):
    started = time.monotonic()
    cluster.ensure_slurm()
    assert time.monotonic() - started < 5


def test_an_array_goes_idle_or_running_then_completed(world, tmp_path, real):
    slurm_stage(world, tmp_path, 'sleep 2; echo "task $SLURM_ARRAY_TASK_ID"', "--array=0-2")
    sub = launch(world)
    seen = []

    def finished():
        seen.append(polled(sub).status)
        return sub.status == Status.COMPLETED

    wait_for(finished, timeout=30, interval=0.5, what="the array to complete")
    assert seen[0] in (Status.IDLE, Status.RUNNING) and set(seen) <= {Status.IDLE, Status.RUNNING, Status.COMPLETED}
    history = list(sub.history.values_list("status", flat=True))
    assert history[0] == Status.NEW and history[-1] == Status.COMPLETED and len(history) >= 3
    jobs = jobs_of(sub)
    assert [j.batch_job_id for j in jobs] == [f"{sub.batch_id}_{i}" for i in range(3)]
    for i, job in enumerate(jobs):
        assert (job.state, job.exit_code, job.host) == ("completed", 0, "localhost")
        assert job.started.utcoffset().total_seconds() == 0 and job.ended >= job.started
        assert job.wall_seconds >= 1
        assert job.stdout_path == job.stderr_path == f"{tmp_path}/out-{sub.batch_id}_{i}.log"
        assert open(job.stdout_path).read() == f"task {i}\n"


def test_failing_tasks_make_the_submission_failed_with_their_exit_codes(world, tmp_path, real):
    body = 'case "$SLURM_ARRAY_TASK_ID" in 1|3) exit 3;; 4) kill -9 $$;; esac; exit 0'
    slurm_stage(world, tmp_path, body, "--array=0-4")
    sub = launch(world)
    wait_for(lambda: polled(sub).status == Status.FAILED, timeout=30, interval=0.5, what="Failed")
    codes = {j.batch_job_id.split("_")[1]: (j.state, j.exit_code) for j in jobs_of(sub)}
    assert codes == {
        "0": ("completed", 0),
        "1": ("failed", 3),
        "2": ("completed", 0),
        "3": ("failed", 3),
        "4": ("failed", 128 + 9),  # killed by SIGKILL
    }


def test_jobs_that_left_the_queue_are_read_from_the_jobcomp_log_alike(world, tmp_path, monkeypatch, real, cluster):
    """squeue forgets jobs MinJobAge after they end; the jobcomp log must then say the same."""
    slurm_stage(world, tmp_path, '[ "$SLURM_ARRAY_TASK_ID" = 1 ] && exit 3; exit 0', "--array=0-2")
    sub = launch(world)
    wait_for(lambda: polled(sub).status not in (Status.IDLE, Status.RUNNING), timeout=30, what="the end")
    target = Target(sub.pk, sub.batch_id)
    from_squeue = real.poll([target])
    assert [o.state for o in from_squeue] == ["completed", "failed", "completed"]
    keys = [f"ArrayJobId={sub.batch_id} ArrayTaskId={i} " for i in range(3)]
    wait_for(lambda: all(k in cluster.JOBCOMP_LOG.read_text() for k in keys), timeout=10, what="jobcomp lines")
    fake_command(tmp_path, monkeypatch, "squeue", f"echo '{EMPTY_QUEUE}'")
    from_jobcomp = real.poll([target])
    # Equal in every field: times (second resolution), exit codes, host, and the output paths
    # POMS stored while the jobs were queued.
    assert from_jobcomp == from_squeue


def test_hold_release_and_kill_through_the_submission_controls(world, tmp_path, real):
    slurm_stage(world, tmp_path, "true", "--array=0-1 --begin=now+600")
    sub = launch(world)
    assert polled(sub).status == Status.IDLE
    act(world, sub, "hold")
    sub.refresh_from_db()
    assert sub.status == Status.HELD
    jobs = jobs_of(sub)
    assert len(jobs) == 2 and {j.state for j in jobs} == {"held"}
    assert {j.hold_reason for j in jobs} <= {"JobHeldAdmin", "JobHeldUser"}  # root's hold is an admin hold
    act(world, sub, "release")
    sub.refresh_from_db()
    assert sub.status == Status.IDLE and {j.state for j in jobs_of(sub)} == {"idle"}
    act(world, sub, "kill")
    sub.refresh_from_db()
    assert sub.status == Status.REMOVED
    # A Removed submission is no longer polled, so ask Slurm directly what became of its jobs.
    target = Target(sub.pk, sub.batch_id)
    wait_for(lambda: {o.state for o in real.poll([target])} == {"removed"}, timeout=10, what="removed jobs")
    observed = real.poll([target])
    assert len(observed) == 2 and all(o.exit_code is None and o.started is None for o in observed)


def test_a_cancelled_pending_array_is_read_from_its_single_jobcomp_line(world, tmp_path, monkeypatch, real, cluster):
    """Slurm logs an array's never-started tasks as one line naming no task; it covers them all."""
    slurm_stage(world, tmp_path, "true", "--array=0-2 --begin=now+600")
    sub = launch(world)
    assert polled(sub).status == Status.IDLE and len(jobs_of(sub)) == 3
    real.remove([Target(sub.pk, sub.batch_id)])
    wait_for(lambda: f"JobId={sub.batch_id} " in cluster.JOBCOMP_LOG.read_text(), timeout=10, what="jobcomp line")
    fake_command(tmp_path, monkeypatch, "squeue", f"echo '{EMPTY_QUEUE}'")
    observed = real.poll([Target(sub.pk, sub.batch_id)])
    assert [(o.batch_job_id, o.state) for o in observed] == [(f"{sub.batch_id}_{i}", "removed") for i in range(3)]
    assert all(o.stdout_path == f"{tmp_path}/out-{sub.batch_id}_{i}.log" for i, o in enumerate(observed))


def test_a_job_slurm_has_never_heard_of_is_not_reported(real):
    assert real.poll([Target(1, "987654321")]) == []
    assert real.poll([Target(2, "not-a-slurm-id")]) == []  # skipped, without stopping the others


def test_control_of_an_unknown_job_is_a_batch_error(real):
    with pytest.raises(BatchError, match="Invalid job id"):
        real.hold([Target(1, "987654321")])
    with pytest.raises(BatchError, match="not a Slurm job id"):
        real.remove([Target(1, "12; rm -rf /")])


# --- an unreachable or garbled Slurm changes nothing ------------------------------------------


@pytest.mark.parametrize(
    "squeue, message",
    [
        (None, "cannot run squeue"),
        ("echo 'slurm_load_jobs error: Unable to contact slurm controller' >&2; exit 1", "Unable to contact"),
        ('echo \'{"jobs": [{"job_id": 1\'', "not JSON"),
        ('echo \'{"errors": [{"error": "boom"}], "jobs": []}\'', "boom"),
        ('echo \'{"jobs": [{"job_id": 4242}]}\'', "without job_id/job_state"),
        ("sleep 5", "did not answer within 1 s"),
    ],
    ids=["missing", "exit-1", "garbled", "errors", "incomplete", "hangs"],
)
def test_an_unreachable_or_garbled_slurm_is_a_batch_error_and_changes_nothing(
    world, tmp_path, monkeypatch, settings, backend, squeue, message
):
    settings.POMS_SLURM_TIMEOUT = 1
    if squeue is None:
        empty = tmp_path / "empty"
        empty.mkdir()
        monkeypatch.setenv("PATH", str(empty))
    else:
        fake_command(tmp_path, monkeypatch, "squeue", squeue)
    sub = SubmissionFactory(stage=world.production_stage, batch_system="slurm", batch_id="4242", status=Status.RUNNING)
    JobFactory(submission=sub, batch_job_id="4242_0", state="running")
    with pytest.raises(BatchError, match=message):
        backend.poll([Target(sub.pk, "4242")])
    services.poll_batch_systems()
    sub.refresh_from_db()
    assert sub.status == Status.RUNNING and message in sub.poll_error
    assert sub.history.count() == 1
    assert [(j.batch_job_id, j.state) for j in jobs_of(sub)] == [("4242_0", "running")]


# --- parsers, on output captured from the real cluster ------------------------------------------

# `squeue --json` records (trimmed to the fields the adapter reads; the real ones carry ~100 keys):
# array 1 (task 1 exited 3, task 3 done), a held job, a running job cancelled, a job killed by
# SIGKILL, array 21 with task 0 suspended and 1-3 pending behind a %1 throttle, a plain running
# job with its own stderr file, and a job of someone else's.
SQUEUE_SAMPLE = """{"meta": {"plugin": {"type": "openapi/v0.0.38", "name": "Slurm OpenAPI v0.0.38"}}, "errors": [],
"jobs": [
{"job_id": 2, "array_job_id": 0, "array_task_id": null, "array_task_string": "", "job_state": "PENDING",
 "state_reason": "JobHeldUser", "exit_code": 0, "start_time": 0, "end_time": 0, "batch_host": "",
 "standard_output": "/tmp/sx/h-%j.log", "standard_error": "", "current_working_directory": "/tmp/sx",
 "name": "wrap", "user_name": "root"},
{"job_id": 3, "array_job_id": 0, "array_task_id": null, "array_task_string": "", "job_state": "CANCELLED",
 "state_reason": "None", "exit_code": 15, "start_time": 1795616879, "end_time": 1795616887, "batch_host": "localhost",
 "standard_output": "/tmp/sx/k-%j.log", "standard_error": "", "current_working_directory": "/tmp/sx",
 "name": "wrap", "user_name": "root"},
{"job_id": 4, "array_job_id": 0, "array_task_id": null, "array_task_string": "", "job_state": "FAILED",
 "state_reason": "JobLaunchFailure", "exit_code": 9, "start_time": 1795616879, "end_time": 1795616879,
 "batch_host": "localhost", "standard_output": "/tmp/sx/sig-%j.log", "standard_error": "",
 "current_working_directory": "/tmp/sx", "name": "wrap", "user_name": "root"},
{"job_id": 6, "array_job_id": 1, "array_task_id": 1, "array_task_string": "", "job_state": "FAILED",
 "state_reason": "NonZeroExitCode", "exit_code": 768, "start_time": 1795616879, "end_time": 1795616881,
 "batch_host": "localhost", "standard_output": "/tmp/sx/out-%A_%a.log", "standard_error": "",
 "current_working_directory": "/tmp/sx", "name": "job.sh", "user_name": "root"},
{"job_id": 1, "array_job_id": 1, "array_task_id": 3, "array_task_string": "", "job_state": "COMPLETED",
 "state_reason": "None", "exit_code": 0, "start_time": 1795616879, "end_time": 1795616881, "batch_host": "localhost",
 "standard_output": "/tmp/sx/out-%A_%a.log", "standard_error": "", "current_working_directory": "/tmp/sx",
 "name": "job.sh", "user_name": "root"},
{"job_id": 22, "array_job_id": 21, "array_task_id": 0, "array_task_string": "", "job_state": "SUSPENDED",
 "state_reason": "None", "exit_code": 0, "start_time": 1795617125, "end_time": 1827153125, "batch_host": "localhost",
 "standard_output": "/tmp/sx/s-%A_%a.log", "standard_error": "", "current_working_directory": "/tmp/sx",
 "name": "wrap", "user_name": "root"},
{"job_id": 21, "array_job_id": 21, "array_task_id": null, "array_task_string": "1-3%1", "job_state": "PENDING",
 "state_reason": "JobArrayTaskLimit", "exit_code": 0, "start_time": 0, "end_time": 0, "batch_host": "",
 "standard_output": "/tmp/sx/s-%A_%a.log", "standard_error": "", "current_working_directory": "/tmp/sx",
 "name": "wrap", "user_name": "root"},
{"job_id": 23, "array_job_id": 0, "array_task_id": null, "array_task_string": "", "job_state": "RUNNING",
 "state_reason": "None", "exit_code": 0, "start_time": 1795617129, "end_time": 1827153129, "batch_host": "localhost",
 "standard_output": "/tmp/sx/plain-%j.log", "standard_error": "/tmp/sx/plain-%j.err",
 "current_working_directory": "/tmp/sx", "name": "my sim", "user_name": "root"},
{"job_id": 99, "array_job_id": 0, "array_task_id": null, "array_task_string": "", "job_state": "RUNNING",
 "state_reason": "None", "exit_code": 0, "start_time": 1795617129, "end_time": 1827153129, "batch_host": "localhost",
 "standard_output": "", "standard_error": "", "current_working_directory": "/home/x", "name": "other",
 "user_name": "x"}
]}"""

# jobcomp/filetxt lines, as written by this cluster (each ends with a space).
JOBCOMP_SAMPLE = """\
JobId=4 UserId=root(0) GroupId=root(0) Name=wrap JobState=FAILED Partition=debug TimeLimit=UNLIMITED StartTime=2026-11-25T14:27:59 EndTime=2026-11-25T14:27:59 NodeList=localhost NodeCnt=1 ProcCnt=1 WorkDir=/tmp/sx ReservationName= Tres=cpu=1,mem=4000M,node=1,billing=1 Account= QOS= WcKey= Cluster=unknown SubmitTime=2026-11-25T14:27:57 EligibleTime=2026-11-25T14:27:57 DerivedExitCode=0:0 ExitCode=0:9 
JobId=6 UserId=root(0) GroupId=root(0) Name=job.sh JobState=FAILED Partition=debug TimeLimit=UNLIMITED StartTime=2026-11-25T14:27:59 EndTime=2026-11-25T14:28:01 NodeList=localhost NodeCnt=1 ProcCnt=1 WorkDir=/tmp/sx ReservationName= Tres=cpu=1,mem=4000M,node=1,billing=1 Account= QOS= WcKey= Cluster=unknown SubmitTime=2026-11-25T14:27:57 EligibleTime=2026-11-25T14:27:57 ArrayJobId=1 ArrayTaskId=1 DerivedExitCode=0:0 ExitCode=3:0 
JobId=1 UserId=root(0) GroupId=root(0) Name=job.sh JobState=NODE_FAIL Partition=debug TimeLimit=UNLIMITED StartTime=2026-11-25T14:27:59 EndTime=2026-11-25T14:28:00 NodeList=localhost NodeCnt=1 ProcCnt=1 WorkDir=/tmp/sx ReservationName= Tres=cpu=1,mem=4000M,node=1,billing=1 Account= QOS= WcKey= Cluster=unknown SubmitTime=2026-11-25T14:27:57 EligibleTime=2026-11-25T14:27:57 ArrayJobId=1 ArrayTaskId=3 DerivedExitCode=0:0 ExitCode=0:0 
JobId=1 UserId=root(0) GroupId=root(0) Name=job.sh JobState=COMPLETED Partition=debug TimeLimit=UNLIMITED StartTime=2026-11-25T14:28:30 EndTime=2026-11-25T14:28:32 NodeList=localhost NodeCnt=1 ProcCnt=1 WorkDir=/tmp/sx ReservationName= Tres=cpu=1,mem=4000M,node=1,billing=1 Account= QOS= WcKey= Cluster=unknown SubmitTime=2026-11-25T14:27:57 EligibleTime=2026-11-25T14:27:57 ArrayJobId=1 ArrayTaskId=3 DerivedExitCode=0:0 ExitCode=0:0 
JobId=23 UserId=root(0) GroupId=root(0) Name=my sim JobState=CANCELLED Partition=debug TimeLimit=UNLIMITED StartTime=2026-11-25T14:32:09 EndTime=2026-11-25T14:32:09 NodeList=localhost NodeCnt=1 ProcCnt=1 WorkDir=/tmp/sx ReservationName= Tres=cpu=1,mem=4000M,node=1,billing=1 Account= QOS= WcKey= Cluster=unknown SubmitTime=2026-11-25T14:32:08 EligibleTime=2026-11-25T14:32:08 DerivedExitCode=0:0 ExitCode=0:0 
JobId=2 UserId=root(0) GroupId=root(0) Name=wrap JobState=CANCELLED Partition=debug TimeLimit=UNLIMITED StartTime=2026-11-25T14:32:09 EndTime=2026-11-25T14:32:09 NodeList=(null) NodeCnt=0 ProcCnt=0 WorkDir=/tmp/sx ReservationName= Tres=cpu=1,mem=4000M,node=1,billing=1 Account= QOS= WcKey= Cluster=unknown SubmitTime=2026-11-25T14:27:57 EligibleTime=unknown DerivedExitCode=0:0 ExitCode=0:0 
JobId=21 UserId=root(0) GroupId=root(0) Name=wrap JobState=CANCELLED Partition=debug TimeLimit=UNLIMITED StartTime=2026-11-25T14:32:09 EndTime=2026-11-25T14:32:09 NodeList=(null) NodeCnt=0 ProcCnt=1 WorkDir=/tmp/sx ReservationName= Tres=cpu=1,mem=4000M,node=1,billing=1 Account= QOS= WcKey= Cluster=unknown SubmitTime=2026-11-25T14:32:05 EligibleTime=unknown DerivedExitCode=0:0 ExitCode=0:0 
JobId=22 UserId=root(0) GroupId=root(0) Name=wrap JobState=CANCELLED Partition=debug TimeLimit=UNLIMITED StartTime=2026-11-25T14:32:05 EndTime=2026-11-25T14:32:08 NodeList=localhost NodeCnt=1 ProcCnt=1 WorkDir=/tmp/sx ReservationName= Tres=cpu=1,mem=4000M,node=1,billing=1 Account= QOS= WcKey= Cluster=unknown SubmitTime=2026-11-25T14:32:05 EligibleTime=2026-11-25T14:32:05 ArrayJobId=21 ArrayTaskId=0 DerivedExitCode=0:0 ExitCode=0:0 
JobId=77 UserId=root(0) GroupId=root(0) Name=wrap JobState=WEIRD_NEW_STATE Partition=debug TimeLimit=UNLIMITED StartTime=2026-11-25T14:32:05 EndTime=2026-11-25T14:32:08 NodeList=localhost NodeCnt=1 ProcCnt=1 WorkDir=/tmp/sx ReservationName= Tres=cpu=1 Account= QOS= WcKey= Cluster=unknown SubmitTime=2026-11-25T14:32:05 EligibleTime=2026-11-25T14:32:05 DerivedExitCode=0:0 ExitCode=0:0 
"""  # noqa: E501, W291 - verbatim log lines


def at(text):
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def summary(observations):
    return {
        o.batch_job_id: (o.submission_id, o.state, o.exit_code, o.host, o.hold_reason, o.stdout_path, o.stderr_path)
        for o in observations
    }


def test_parse_batch_id_takes_the_last_announcement(backend):
    assert backend.parse_batch_id("Submitted batch job 12\n") == "12"
    assert backend.parse_batch_id("Submitted batch job 7\nnoise\nSubmitted batch job 8 on cluster poms\n") == "8"
    assert backend.parse_batch_id("sbatch: error: Batch job submission failed: Invalid partition name\n") is None
    assert backend.parse_batch_id("Submitted batch job x\n") is None


def test_squeue_json_maps_states_exit_codes_holds_arrays_and_output_paths(tmp_path, monkeypatch, settings, backend):
    sample = tmp_path / "squeue.json"
    sample.write_text(SQUEUE_SAMPLE)
    fake_command(tmp_path, monkeypatch, "squeue", f"cat {sample}")
    settings.POMS_SLURM_JOBCOMP_LOG = tmp_path / "no-such.log"
    observed = backend.poll([Target(10, "1"), Target(20, "2"), Target(30, "3"), Target(40, "4"), Target(50, "21"),
                             Target(60, "23")])  # fmt: skip
    out = "/tmp/sx/out-1_{}.log"
    assert summary(observed) == {
        "1_1": (10, "failed", 3, "localhost", "", out.format(1), out.format(1)),
        "1_3": (10, "completed", 0, "localhost", "", out.format(3), out.format(3)),
        "2": (20, "held", None, "", "JobHeldUser", "/tmp/sx/h-2.log", "/tmp/sx/h-2.log"),
        "3": (30, "removed", None, "localhost", "", "/tmp/sx/k-3.log", "/tmp/sx/k-3.log"),
        "4": (40, "failed", 137, "localhost", "", "/tmp/sx/sig-4.log", "/tmp/sx/sig-4.log"),
        "21_0": (50, "held", None, "localhost", "suspended", "/tmp/sx/s-21_0.log", "/tmp/sx/s-21_0.log"),
        "21_1": (50, "idle", None, "", "", "/tmp/sx/s-21_1.log", "/tmp/sx/s-21_1.log"),
        "21_2": (50, "idle", None, "", "", "/tmp/sx/s-21_2.log", "/tmp/sx/s-21_2.log"),
        "21_3": (50, "idle", None, "", "", "/tmp/sx/s-21_3.log", "/tmp/sx/s-21_3.log"),
        "23": (60, "running", None, "localhost", "", "/tmp/sx/plain-23.log", "/tmp/sx/plain-23.err"),
    }
    by_id = {o.batch_job_id: o for o in observed}
    failed = by_id["1_1"]
    assert (failed.started, failed.ended, failed.wall_seconds) == (
        at("2026-11-25T14:27:59"),
        at("2026-11-25T14:28:01"),
        2,
    )
    running = by_id["23"]
    # A running job's end_time is only Slurm's forecast (start + time limit): not an end.
    assert running.started == at("2026-11-25T14:32:09") and running.ended is None and running.wall_seconds is None
    assert by_id["21_1"].started is None  # pending: start_time would be a forecast too


def test_the_jobcomp_log_gives_jobs_that_left_the_queue(tmp_path, monkeypatch, settings, world, backend):
    fake_command(tmp_path, monkeypatch, "squeue", f"echo '{EMPTY_QUEUE}'")
    log = tmp_path / "jobcomp.log"
    log.write_text(JOBCOMP_SAMPLE)
    settings.POMS_SLURM_JOBCOMP_LOG = log
    settings.POMS_SLURM_TIME_ZONE = "UTC"
    sub = SubmissionFactory(stage=world.production_stage, batch_system="slurm", batch_id="21", status=Status.RUNNING)
    for task, state in (("0", "running"), ("1", "idle"), ("2", "idle"), ("3", "idle")):
        JobFactory(
            submission=sub,
            batch_job_id=f"21_{task}",
            state=state,
            stdout_path=f"/o/21_{task}",
            stderr_path=f"/o/21_{task}",
        )
    targets = [Target(10, "1"), Target(20, "2"), Target(40, "4"), Target(sub.pk, "21"), Target(60, "23"),
               Target(70, "77"), Target(80, "555")]  # fmt: skip
    observed = backend.poll(targets)
    assert summary(observed) == {
        "1_1": (10, "failed", 3, "localhost", "", "", ""),
        "1_3": (10, "completed", 0, "localhost", "", "", ""),  # requeued after NODE_FAIL: the last line wins
        "2": (20, "removed", None, "", "", "", ""),
        "4": (40, "failed", 137, "localhost", "", "", ""),
        "21_0": (sub.pk, "removed", None, "localhost", "", "/o/21_0", "/o/21_0"),
        # The array's own line (no task named) stands for the tasks that never left the pending pool.
        "21_1": (sub.pk, "removed", None, "", "", "/o/21_1", "/o/21_1"),
        "21_2": (sub.pk, "removed", None, "", "", "/o/21_2", "/o/21_2"),
        "21_3": (sub.pk, "removed", None, "", "", "/o/21_3", "/o/21_3"),
        "23": (60, "removed", None, "localhost", "", "", ""),
        # 77 has a state POMS does not know and 555 is in neither place: neither is reported.
    }
    by_id = {o.batch_job_id: o for o in observed}
    assert (by_id["1_3"].started, by_id["1_3"].ended) == (at("2026-11-25T14:28:30"), at("2026-11-25T14:28:32"))
    assert by_id["2"].started is None and by_id["1_3"].wall_seconds == 2
    settings.POMS_SLURM_TIME_ZONE = "America/Chicago"  # slurmctld writes its local time
    assert {o.batch_job_id: o.started for o in backend.poll([Target(10, "1")])}["1_1"] == at("2026-11-25T20:27:59")


def test_a_task_that_left_the_queue_takes_its_output_pattern_from_a_queued_sibling(tmp_path, monkeypatch, settings):
    running = {"job_id": 9, "array_job_id": 1, "array_task_id": 0, "job_state": "RUNNING", "state_reason": "None",
               "exit_code": 0, "start_time": 1795616879, "end_time": 1827152879, "batch_host": "localhost",
               "standard_output": "/o/%A/%a-%j.log", "standard_error": "", "current_working_directory": "/w",
               "name": "n", "user_name": "u"}  # fmt: skip
    fake_command(tmp_path, monkeypatch, "squeue", f"echo '{json.dumps({'jobs': [running]})}'")
    log = tmp_path / "jobcomp.log"
    log.write_text(JOBCOMP_SAMPLE)
    settings.POMS_SLURM_JOBCOMP_LOG = log
    observed = SlurmBatch().poll([Target(10, "1")])
    assert [(o.batch_job_id, o.state, o.stdout_path) for o in observed] == [
        ("1_0", "running", "/o/1/0-9.log"),
        ("1_1", "failed", "/o/1/1-6.log"),  # JobId=6 from its jobcomp line
        ("1_3", "completed", "/o/1/3-1.log"),
    ]


def test_small_parsers():
    assert [exit_code_from_status(s) for s in (0, 768, 9, 15, 256 * 255)] == [0, 3, 137, 143, 255]
    assert [exit_code_from_pair(p) for p in ("0:0", "3:0", "0:9", "garbage")] == [0, 3, 137, None]
    assert expand_tasks("2-3%2") == [2, 3] and expand_tasks("1,5-9:2") == [1, 5, 7, 9] and expand_tasks("") == []
    fields = parse_jobcomp_line(JOBCOMP_SAMPLE.splitlines()[4])
    assert fields["Name"] == "my sim" and fields["ExitCode"] == "0:0" and fields["Account"] == ""
    args = {"job_id": 13, "array_job_id": 12, "task_id": 1, "name": "sim", "user": "ann", "workdir": "/w"}
    assert expand_output_path("", **args) == "/w/slurm-12_1.out"
    assert expand_output_path("", **{**args, "task_id": None, "job_id": 12}) == "/w/slurm-12.out"
    assert expand_output_path("o/%x-%u-%j-%4a-%%.log", **args) == "/w/o/sim-ann-13-0001-%.log"
    assert expand_output_path("/o/%N-%j.log", **args) == ""  # the node is not known here: no guess
    assert expand_output_path("/o/\\%j.log", **args) == "/o/%j.log"


def test_the_default_jobcomp_log_is_under_the_var_dir(settings):
    if hasattr(settings, "POMS_SLURM_JOBCOMP_LOG"):
        del settings.POMS_SLURM_JOBCOMP_LOG
    assert SlurmBatch().jobcomp_log == Path(settings.VAR_DIR) / "slurm" / "jobcomp.log"
    setup = _setup_module()
    assert setup.JOBCOMP_LOG == SlurmBatch().jobcomp_log  # the cluster writes where the adapter reads
    assert f"JobCompLoc={setup.JOBCOMP_LOG}" in setup.config_text()
