"""The local batch system, for real: bin/poms_local_submit processes observed by the adapter."""

import os
import subprocess
import sys

from django.conf import settings

from launches.batch import Target, get_backend
from tests.factories import BIN

from .helpers import wait_for

backend = get_backend("local")


def submit(n, *payload, delay="0.3"):
    env = {**os.environ, "POMS_LOCAL_BATCH_ROOT": str(settings.POMS_LOCAL_BATCH_ROOT)}
    out = subprocess.run(
        [sys.executable, str(BIN / "poms_local_submit"), "-N", str(n), "--queue-delay", delay, "--", *payload],
        capture_output=True, text=True, env=env, check=True,
    ).stdout  # fmt: skip
    return backend.parse_batch_id(out)


def states(batch_id):
    return [o.state for o in backend.poll([Target(1, batch_id)])]


def test_it_parses_the_cluster_id():
    assert backend.parse_batch_id("noise\nSubmitted local cluster 42 (3 jobs).\n") == "42"
    assert backend.parse_batch_id("Submitted local cluster x (3 jobs).") is None


def test_jobs_go_idle_running_completed_with_exit_codes_and_output():
    cid = submit(2, "bash", "-c", 'sleep 1; echo out-$POMS_LOCAL_PROCESS; [ "$POMS_LOCAL_PROCESS" = 0 ] || exit 3')
    assert states(cid) == ["idle", "idle"]
    wait_for(lambda: states(cid) == ["running", "running"], what="running")
    wait_for(lambda: set(states(cid)) <= {"completed", "failed"}, what="finished")
    first, second = backend.poll([Target(1, cid)])
    assert (first.state, first.exit_code) == ("completed", 0)
    assert (second.state, second.exit_code) == ("failed", 3)
    assert first.batch_job_id == f"{cid}.0" and first.host and first.wall_seconds >= 1
    assert open(first.stdout_path).read() == "out-0\n"


def test_hold_release_and_remove():
    cid = submit(1, "sleep", "30", delay="0")
    wait_for(lambda: states(cid) == ["running"], what="running")
    backend.hold([Target(1, cid)])
    wait_for(lambda: states(cid) == ["held"], what="held")
    backend.release([Target(1, cid)])
    wait_for(lambda: states(cid) == ["running"], what="released")
    backend.hold([Target(1, cid)])
    wait_for(lambda: states(cid) == ["held"], what="held again")
    backend.remove([Target(1, cid)])  # a held job must still die
    wait_for(lambda: states(cid) == ["removed"], what="removed")


def test_an_unknown_or_garbled_cluster_is_a_problem_of_its_submission_only(settings):
    good = submit(1, "true")
    cid = submit(1, "true")
    (settings.POMS_LOCAL_BATCH_ROOT / "clusters" / cid / "0.json").write_text("{garbled")
    answer = backend.poll([Target(1, "999"), Target(2, cid), Target(3, good)])
    assert [o.submission_id for o in answer] == [3]
    assert answer.problems[1] == "local cluster 999 is unknown"
    assert answer.problems[2].startswith("unreadable job record")


def test_a_job_removed_before_it_starts_is_removed_not_lost():
    cid = submit(2, "sleep", "30", delay="5")
    backend.remove([Target(1, cid)])  # the supervisors may not even have their SIGTERM handler yet
    wait_for(lambda: states(cid) == ["removed", "removed"], what="removed")
