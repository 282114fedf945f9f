"""Runners execute a composed launch plan (DESIGN §6): `local` on this host, `ssh` on a login host."""

from . import local, ssh


class RunnerError(Exception):
    pass


def runner_for(plan):
    if plan.target.startswith("local:"):
        return local.run
    if plan.target.startswith("ssh "):
        return ssh.run
    raise RunnerError(f"no runner for target {plan.target!r}")
