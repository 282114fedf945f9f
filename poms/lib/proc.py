"""The one way POMS runs a subprocess: an argv list, its own session, a timeout that kills
the whole process group (wrapper scripts leave grandchildren that `run()` alone would miss)."""

import os
import signal
import subprocess
import time
from dataclasses import dataclass

GRACE_SECONDS = 5


@dataclass
class Result:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    stopped: bool = False


def _kill_group(proc):
    """SIGTERM the whole group, give the leader GRACE_SECONDS, then SIGKILL whatever is left of
    the group (a member that ignores SIGTERM would otherwise outlive the leader)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        if sig == signal.SIGTERM:
            try:
                proc.wait(GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                pass


def _collect(proc):
    """Whatever output is left after a kill, without waiting for ever on a pipe some process
    outside the group (a daemonised grandchild) still holds."""
    try:
        return proc.communicate(timeout=GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        for pipe in (proc.stdout, proc.stderr):
            if pipe:
                pipe.close()
        proc.wait()
        return b"", b""


def run(argv, *, timeout, env=None, cwd=None, log_path=None, should_stop=None, check_every=1.0, input=None):  # noqa: A002
    """Run `argv`; output is captured, or appended to `log_path` (stdout and stderr merged).
    `input` (text) is written to its stdin, which is otherwise /dev/null.

    `should_stop()` is asked every `check_every` seconds; when it answers True the process
    group is killed (Abort launch, decided in the database by whoever asks).
    """
    if isinstance(argv, str):
        raise TypeError("argv must be a list, never a shell string")
    log = open(log_path, "ab") if log_path else None  # noqa: SIM115 - closed below
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
            stdout=log or subprocess.PIPE,
            stderr=subprocess.STDOUT if log else subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        data = None if input is None else input.encode()
        deadline = time.monotonic() + timeout
        timed_out = stopped = False
        try:
            while True:
                left = deadline - time.monotonic()
                step = min(check_every, max(left, 0)) if should_stop else left
                try:
                    out, err = proc.communicate(data, timeout=max(step, 0.01))
                    break
                except subprocess.TimeoutExpired:
                    data = None  # written by the first call; later calls carry on where it stopped
                    # A leader that has exited is not hanging: only something it left holds a pipe.
                    timed_out = time.monotonic() >= deadline and proc.poll() is None
                    stopped = not timed_out and should_stop is not None and should_stop()
                    if timed_out or stopped or time.monotonic() >= deadline:
                        _kill_group(proc)
                        out, err = _collect(proc)
                        break
        except BaseException:
            _kill_group(proc)  # whatever went wrong here (should_stop's query, Ctrl-C), nothing outlives it
            raise
    finally:
        if log:
            log.close()
    decode = lambda b: (b or b"").decode("utf-8", "replace")  # noqa: E731
    return Result(proc.returncode, decode(out), decode(err), timed_out, stopped)
