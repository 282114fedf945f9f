"""The submission status machine (DESIGN §5): one explicit transition table.

`decide()` is pure; `submissions.services` is the only caller that writes its answer.
"""

from .models import JobState, Status

S = Status
RUNNING_LIKE = {S.IDLE, S.RUNNING, S.HELD}
ENDINGS = {S.FAILED, S.COMPLETED, S.REMOVED, S.CANCELLED}

# What the system itself (launch task, poller, wrapup) may move a submission to.
# Located, Removed, Failed and Cancelled are final for automatic updates; once Completed only
# Located or Removed may follow; LaunchFailed is not final because a slow launch may report late.
AUTOMATIC = {
    S.NEW: {S.LAUNCH_FAILED, S.AWAITING_APPROVAL} | RUNNING_LIKE | ENDINGS,
    S.LAUNCH_FAILED: RUNNING_LIKE | ENDINGS,
    S.AWAITING_APPROVAL: set(),
    S.IDLE: RUNNING_LIKE | ENDINGS,
    S.RUNNING: RUNNING_LIKE | ENDINGS,
    S.HELD: RUNNING_LIKE | ENDINGS,
    S.COMPLETED: {S.LOCATED, S.REMOVED},
    S.FAILED: set(),
    S.LOCATED: set(),
    S.REMOVED: set(),
    S.CANCELLED: set(),
}

# What a person may do on top: kill/cancel anything unfinished, approve or reject, kick a
# finished submission to Completed or Located (POMS "Kick to Completed", "Let Removed be Completed").
BY_USER = {
    S.NEW: {S.REMOVED, S.CANCELLED, S.LAUNCH_FAILED},
    S.LAUNCH_FAILED: {S.COMPLETED, S.REMOVED, S.CANCELLED},
    S.AWAITING_APPROVAL: {S.COMPLETED, S.REMOVED},
    S.IDLE: {S.REMOVED, S.CANCELLED, S.COMPLETED},
    S.RUNNING: {S.REMOVED, S.CANCELLED, S.COMPLETED},
    S.HELD: {S.REMOVED, S.CANCELLED, S.COMPLETED},
    S.COMPLETED: {S.LOCATED, S.REMOVED},
    S.FAILED: {S.COMPLETED, S.LOCATED},
    S.LOCATED: set(),
    S.REMOVED: {S.COMPLETED},
    S.CANCELLED: {S.COMPLETED},
}

FINAL = {S.FAILED, S.LOCATED, S.REMOVED, S.CANCELLED}


def decide(current, proposed, *, by_user=False, is_recovery=False):
    """The status to move to, or None when the proposal must be ignored."""
    current, proposed = S(current), S(proposed)
    if proposed == S.FAILED and is_recovery:
        # A recovery "succeeds" even if its files fail again (POMS rule 2).
        proposed = S.COMPLETED
    if proposed == current:
        return None
    allowed = AUTOMATIC[current] | (BY_USER[current] if by_user else set())
    return proposed if proposed in allowed else None


def derive_from_jobs(counts):
    """A submission's status from its job counts (POMS submission_agent rules).

    `counts` maps JobState → number of jobs. Returns None when there are no jobs yet.
    """
    held, running, idle = counts.get(JobState.HELD, 0), counts.get(JobState.RUNNING, 0), counts.get(JobState.IDLE, 0)
    completed, failed = counts.get(JobState.COMPLETED, 0), counts.get(JobState.FAILED, 0)
    removed = counts.get(JobState.REMOVED, 0)
    if held + running + idle + completed + failed + removed == 0:
        return None
    if held:
        return S.HELD
    if running:
        return S.RUNNING
    if idle:
        return S.IDLE
    if removed and not completed and not failed:
        return S.REMOVED
    if failed * 2 > completed:
        return S.FAILED
    return S.COMPLETED
