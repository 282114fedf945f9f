"""The ledger: submissions, their status history, jobs and job events (DESIGN §5)."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from campaigns.models import ConfigSnapshot, Stage
from poms.models import Owned


class Status(models.IntegerChoices):
    """POMS's submission statuses; the numeric order is part of the API."""

    NEW = 1000, "New"
    CANCELLED = 1500, "Cancelled"
    LAUNCH_FAILED = 2000, "LaunchFailed"
    AWAITING_APPROVAL = 2400, "Awaiting Approval"
    IDLE = 3000, "Idle"
    RUNNING = 4000, "Running"
    HELD = 5000, "Held"
    FAILED = 6000, "Failed"
    COMPLETED = 7000, "Completed"
    LOCATED = 8000, "Located"
    REMOVED = 9000, "Removed"


# Submissions the poller still asks the batch system about.
ACTIVE_STATUSES = (Status.NEW, Status.LAUNCH_FAILED, Status.IDLE, Status.RUNNING, Status.HELD)


class SubmissionQuerySet(models.QuerySet):
    def active(self):
        """What the poller asks about: running submissions, and killed ones whose jobs have not
        all been seen to end (so their job rows end up right, not frozen at Running)."""
        unfinished = F("jobs_idle") + F("jobs_running") + F("jobs_held")
        killed = Q(status__in=(Status.REMOVED, Status.CANCELLED)) & Q(jobs_unfinished__gt=0)
        return (
            self.alias(jobs_unfinished=unfinished).filter(Q(status__in=ACTIVE_STATUSES) | killed).exclude(batch_id="")
        )

    def for_table(self):
        return self.select_related("launcher").defer("params", "environment", "command")


class Submission(Owned):
    """One launch of a stage: one batch cluster or DAG (POMS `submissions`).

    The current status lives here and changes only through `submissions.services`.
    """

    stage = models.ForeignKey(Stage, on_delete=models.PROTECT, related_name="submissions")
    status = models.IntegerField(choices=Status.choices, default=Status.NEW)
    status_changed = models.DateTimeField(auto_now_add=True)
    params = models.JSONField(default=dict, blank=True, help_text="dataset, test, parent, workflow log, …")
    test = models.BooleanField(default=False)
    snapshot = models.ForeignKey(ConfigSnapshot, null=True, on_delete=models.PROTECT, related_name="submissions")
    launcher = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    recovery_parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    recovery_position = models.PositiveSmallIntegerField(default=0)
    # Launch record: what ran, where, with which environment; filled before the run starts.
    batch_system = models.CharField(max_length=20)
    batch_id = models.CharField(max_length=200, blank=True, help_text="cluster id, e.g. 23733516@jobsub02.fnal.gov")
    command = models.TextField(blank=True)
    environment = models.JSONField(default=dict, blank=True)
    runner_target = models.CharField(max_length=300, blank=True)
    launch_log = models.CharField(max_length=500, blank=True)
    abort_requested = models.BooleanField(default=False)
    launch_started = models.DateTimeField(null=True, blank=True)
    launch_finished = models.DateTimeField(null=True, blank=True)
    launch_exit_code = models.IntegerField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True, help_text="entered a final state")
    # Job counters, kept equal to the Job rows by record_observations().
    jobs_idle = models.PositiveIntegerField(default=0)
    jobs_running = models.PositiveIntegerField(default=0)
    jobs_held = models.PositiveIntegerField(default=0)
    jobs_completed = models.PositiveIntegerField(default=0)
    jobs_failed = models.PositiveIntegerField(default=0)
    jobs_removed = models.PositiveIntegerField(default=0)
    # File accounting cached from the data handler by wrapup (POMS files_consumed/generated).
    files_total = models.IntegerField(null=True, blank=True)
    files_consumed = models.IntegerField(null=True, blank=True)
    files_failed = models.IntegerField(null=True, blank=True)
    files_generated = models.IntegerField(null=True, blank=True)
    # Set with Located, cleared once recoveries/dependents were decided: a wrapup that dies in
    # between leaves it set, and the next pass finishes the job.
    followups_pending = models.BooleanField(default=False)
    # When wrapup last looked at it without finishing (not Located yet, follow-ups postponed):
    # each pass takes the least recently examined first, so none waits behind others for ever.
    wrapup_checked = models.DateTimeField(null=True, blank=True)
    polled = models.DateTimeField(null=True, blank=True)
    # Random, new whenever a poll writes this submission's jobs: a poll worker's copy of the rows
    # is current while the version is the one it wrote or read them with (submissions/ingest.py
    # Mirror). Anything else that ever writes jobs must give the submission a new version too.
    poll_version = models.BigIntegerField(default=0)
    poll_error = models.TextField(blank=True)

    objects = SubmissionQuerySet.as_manager()

    class Meta:
        indexes = [
            # Stage page: a stage's submissions, newest first, keyset by id.
            models.Index(fields=["stage", "-id"], name="submission_by_stage"),
            # Poller: the few active submissions among millions.
            models.Index(
                fields=["batch_system"],
                name="submission_active",
                condition=models.Q(status__in=[1000, 2000, 3000, 4000, 5000]),
            ),
            # Wrapup: Completed submissions to Locate, least recently examined first.
            models.Index(fields=["wrapup_checked", "id"], name="submission_to_locate", condition=models.Q(status=7000)),
            # Wrapup: Located submissions whose follow-ups are not decided yet (a handful).
            models.Index(
                fields=["wrapup_checked", "id"],
                name="submission_followups_owed",
                condition=models.Q(followups_pending=True),
            ),
            # Dashboard: recent failures per experiment.
            models.Index(fields=["experiment", "status", "-status_changed"], name="submission_exp_status"),
        ]

    def __str__(self):
        return f"submission {self.pk}"

    @property
    def dataset(self):
        return self.params.get("dataset", "")

    @property
    def jobs_total(self):
        return (
            self.jobs_idle
            + self.jobs_running
            + self.jobs_held
            + self.jobs_completed
            + self.jobs_failed
            + self.jobs_removed
        )

    @property
    def duration(self):
        if self.launch_started is None:
            return None
        end = self.finished or self.status_changed
        return end - self.launch_started if self.status >= Status.FAILED else None


class StatusHistory(models.Model):
    """Append-only: one row per submission status transition (POMS `submission_histories`)."""

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="history")
    status = models.IntegerField(choices=Status.choices)
    created = models.DateTimeField(db_index=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cause = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["created", "id"]
        indexes = [
            # Submission page timeline.
            models.Index(fields=["submission", "created"], name="statushistory_timeline"),
        ]
        verbose_name_plural = "status history"

    def __str__(self):
        return f"{self.submission_id} → {self.get_status_display()} at {self.created:%Y-%m-%d %H:%M:%S}"


class JobState(models.TextChoices):
    IDLE = "idle"
    RUNNING = "running"
    HELD = "held"
    COMPLETED = "completed"
    FAILED = "failed"
    REMOVED = "removed"


JOB_DONE_STATES = (JobState.COMPLETED, JobState.FAILED, JobState.REMOVED)


class Job(models.Model):
    """One batch job (a cluster's process / array task) of a submission."""

    # No index of its own: job_unique_batch_id starts with submission_id and serves its lookups.
    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="jobs", db_index=False)
    batch_job_id = models.CharField(max_length=200)
    state = models.CharField(max_length=10, choices=JobState.choices, default=JobState.IDLE)
    state_changed = models.DateTimeField()
    exit_code = models.IntegerField(null=True, blank=True)
    host = models.CharField(max_length=200, blank=True)
    started = models.DateTimeField(null=True, blank=True)
    ended = models.DateTimeField(null=True, blank=True)
    cpu_seconds = models.FloatField(null=True, blank=True)
    wall_seconds = models.FloatField(null=True, blank=True)
    memory_mb = models.FloatField(null=True, blank=True)
    hold_reason = models.CharField(max_length=300, blank=True)
    stdout_path = models.CharField(max_length=500, blank=True)
    stderr_path = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["submission", "batch_job_id"], name="job_unique_batch_id"),
        ]

    def __str__(self):
        return self.batch_job_id


class JobEvent(models.Model):
    """Append-only: one row per job state transition."""

    # Indexed by jobevent_by_job (job, created). No database constraint: events are written only by
    # the poll, in the very statement that updates or inserts their jobs (submissions/ingest.py),
    # and go with their job through the ORM's cascade. Checking 10,000 events per poll at COMMIT
    # cost as much as writing them (bench/README.md).
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events", db_index=False, db_constraint=False)
    state = models.CharField(max_length=10, choices=JobState.choices)
    created = models.DateTimeField()
    exit_code = models.IntegerField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["job", "created"], name="jobevent_by_job")]

    def __str__(self):
        return f"{self.job_id} → {self.state}"
