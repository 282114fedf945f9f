"""The engine's own rows: queued (held) launches and the experiment-wide launch hold."""

from django.conf import settings
from django.db import models

from campaigns.models import Stage
from poms.models import Experiment
from submissions.models import Submission


class HeldLaunch(models.Model):
    """A launch requested while launches were held (POMS `held_launches`).

    Everything needed to run it later exactly as asked, as the person who asked.
    """

    stage = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="held_launches")
    created = models.DateTimeField(auto_now_add=True)
    launcher = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    launcher_role = models.CharField(max_length=20)
    dataset = models.TextField(null=True, blank=True, help_text="explicit dataset; empty = the split decides")
    parent = models.ForeignKey(Submission, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    overrides = models.JSONField(default=list, blank=True)
    test = models.BooleanField(default=False)
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["created", "id"]
        indexes = [
            # Draining: the oldest queued launch of a stage first.
            models.Index(fields=["stage", "created"], name="heldlaunch_drain"),
        ]

    def __str__(self):
        return f"held launch of {self.stage} by {self.launcher} at {self.created:%Y-%m-%d %H:%M}"


class LaunchHold(models.Model):
    """While a row exists for an experiment, every launch in it is queued instead of run.

    The row with no experiment holds launches everywhere (root only), like POMS's global switch.
    """

    experiment = models.OneToOneField(Experiment, null=True, blank=True, on_delete=models.CASCADE)
    held_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment"], name="launchhold_one_per_scope", nulls_distinct=False),
        ]

    def __str__(self):
        return f"launches held in {self.experiment or 'all experiments'} by {self.held_by}"


class FollowUp(models.Model):
    """A recovery or dependent launch wrapup made for a submission.

    The unique constraint is what makes wrapup safe to run twice or concurrently: the row is
    written in the same transaction as the launch it stands for, so a second attempt fails
    on the constraint instead of launching again.
    """

    RECOVERY, DEPENDENT = "recovery", "dependent"
    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=10, choices=[(RECOVERY, RECOVERY), (DEPENDENT, DEPENDENT)])
    position = models.PositiveIntegerField(help_text="recovery list position, or dependency index")
    launched = models.ForeignKey(Submission, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    dataset = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["submission", "kind", "position"], name="followup_once"),
            # A submission's automatic recovery is launched once, whatever position two racing
            # wrapups read (the next one is launched from that recovery's own leftovers).
            models.UniqueConstraint(
                fields=["submission"], condition=models.Q(kind="recovery"), name="followup_one_recovery"
            ),
        ]

    def __str__(self):
        return f"{self.kind} {self.position} of submission {self.submission_id}"
