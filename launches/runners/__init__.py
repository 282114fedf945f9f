"""Runners execute a composed launch plan (DESIGN §6). `ssh` arrives with issue #3."""

from . import local


class RunnerError(Exception):
    pass


def runner_for(plan):
    if plan.target.startswith("local:"):
        return local.run
    raise RunnerError(f"no runner for target {plan.target!r} yet (only local launches are supported)")
