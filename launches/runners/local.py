"""The local runner: the launch script runs as a process on the POMS host."""

import os

from poms.lib import proc

# The launch environment: a clean base plus the POMS variables; never the web server's secrets.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "TMPDIR")


def run(plan, *, log_path, timeout, on_start=None):
    env = {k: v for k, v in os.environ.items() if k in PASSED_THROUGH}
    env.update(plan.environment)
    return proc.run(["bash", "-c", plan.script], timeout=timeout, env=env, log_path=log_path, on_start=on_start)
