"""poms.lib.proc.run: nothing it starts outlives a timeout, an abort or an error."""

import os
import time

import pytest

from poms.lib import proc
from tests.launches.helpers import wait_for


def alive(pid):
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_gone(pid):
    return wait_for(lambda: not alive(pid), timeout=10, interval=0.1, what=f"process {pid} to die")


def test_a_member_that_ignores_sigterm_dies_with_the_group(tmp_path, monkeypatch):
    monkeypatch.setattr(proc, "GRACE_SECONDS", 1)
    pidfile = tmp_path / "stubborn.pid"
    script = f"(trap '' TERM; sleep 300) & echo $! > {pidfile}; sleep 300"
    result = proc.run(["bash", "-c", script], timeout=1)
    assert result.timed_out
    assert wait_gone(int(pidfile.read_text()))


def test_the_timeout_holds_even_when_a_daemon_keeps_the_pipe_open(tmp_path, monkeypatch):
    monkeypatch.setattr(proc, "GRACE_SECONDS", 1)
    pidfile = tmp_path / "daemon.pid"
    # setsid: a grandchild outside the process group, holding stdout, as a daemon would.
    script = f"setsid sleep 300 & echo $! > {pidfile}; sleep 300"
    start = time.monotonic()
    result = proc.run(["bash", "-c", script], timeout=1)
    assert result.timed_out and time.monotonic() - start < 6
    os.kill(int(pidfile.read_text()), 9)


def test_a_command_that_exits_zero_leaving_a_child_on_the_pipe_did_not_time_out(tmp_path, monkeypatch):
    monkeypatch.setattr(proc, "GRACE_SECONDS", 1)
    result = proc.run(["bash", "-c", "echo done; sleep 300 &"], timeout=1)
    assert (result.returncode, result.timed_out) == (0, False)


def test_an_error_while_asking_whether_to_stop_kills_the_group(tmp_path, monkeypatch):
    monkeypatch.setattr(proc, "GRACE_SECONDS", 1)
    pidfile = tmp_path / "leader.pid"

    def broken():
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError):
        proc.run(["bash", "-c", f"echo $$ > {pidfile}; sleep 300"], timeout=30, should_stop=broken, check_every=0.2)
    assert wait_gone(int(pidfile.read_text()))
