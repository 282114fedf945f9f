"""The local runner: the launch script runs as a process on the POMS host."""

import os

from poms.lib import proc

# The launch environment: a clean base plus the POMS variables; never the web server's secrets.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "TMPDIR")


def run(plan, *, log_path, timeout, should_stop=None, secrets=None):
    """`secrets` join the environment of the run but are never stored with the plan."""
    env = {k: v for k, v in os.environ.items() if k in PASSED_THROUGH}
    env.update(plan.environment)
    env.update(secrets or {})
    return proc.run(["bash", "-c", plan.script], timeout=timeout, env=env, log_path=log_path, should_stop=should_stop)
