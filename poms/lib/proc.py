"""The one way POMS runs a subprocess: an argv list, its own session, a timeout that kills
the whole process group (wrapper scripts leave grandchildren that `run()` alone would miss)."""

import os
import signal
import subprocess
from dataclasses import dataclass

GRACE_SECONDS = 5


@dataclass
class Result:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool


def _kill_group(proc):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(GRACE_SECONDS)
            return
        except subprocess.TimeoutExpired:
            continue


def run(argv, *, timeout, env=None, cwd=None, log_path=None, on_start=None):
    """Run `argv`; output is captured, or appended to `log_path` (stdout and stderr merged).

    `on_start(pid)` is called once the child exists (used to record it for Abort).
    """
    if isinstance(argv, str):
        raise TypeError("argv must be a list, never a shell string")
    log = open(log_path, "ab") if log_path else None  # noqa: SIM115 - closed below
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log or subprocess.PIPE,
            stderr=subprocess.STDOUT if log else subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        if on_start:
            on_start(proc.pid)
        try:
            out, err = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            timed_out = True
    finally:
        if log:
            log.close()
    decode = lambda b: (b or b"").decode("utf-8", "replace")  # noqa: E731
    return Result(proc.returncode, decode(out), decode(err), timed_out)
