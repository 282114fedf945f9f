"""Configuration: login setups, job types, campaigns, stages and their DAG (POMS §2.1)."""

import hashlib
import json

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from poms.models import Owned


def overrides_field():
    # POMS keeps overrides as an ordered JSON list of [key, value] pairs.
    return models.JSONField(default=list, blank=True)


class LoginSetup(Owned):
    """Where and as whom a launch runs, and the shell set-up before it (POMS `login_setups`).

    An empty host means the local runner (a process on the POMS host itself).
    """

    name = models.CharField(max_length=100)
    launch_host = models.CharField(max_length=200, blank=True)
    launch_account = models.CharField(max_length=100, blank=True)
    launch_setup = models.TextField(blank=True, help_text="Shell snippet run before the launch command")
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["experiment", "name"], name="loginsetup_unique_name")]

    def __str__(self):
        return self.name


class BatchSystem(models.TextChoices):
    LOCAL = "local", "local (processes on this host)"
    SLURM = "slurm", "Slurm"
    JOBSUB = "jobsub", "jobsub_lite (Fermilab HTCondor)"


class JobType(Owned):
    """The experiment's launch command and its parameters (POMS `job_types`)."""

    name = models.CharField(max_length=100)
    launch_script = models.TextField(help_text="e.g. fife_launch -c cfg/generic.cfg")
    definition_parameters = overrides_field()
    output_file_patterns = models.CharField(max_length=500, blank=True, default="%")
    batch_system = models.CharField(max_length=20, choices=BatchSystem.choices, default=BatchSystem.LOCAL)
    # Keys whose values are pasted into the command unquoted (template authors opt in).
    raw_keys = models.JSONField(default=list, blank=True)
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["experiment", "name"], name="jobtype_unique_name")]

    def __str__(self):
        return self.name


class RecoveryType(models.TextChoices):
    ADDED_FILES = "added_files"
    CONSUMED_STATUS = "consumed_status"
    DELIVERED_NOT_CONSUMED = "delivered_not_consumed"
    PENDING_FILES = "pending_files"
    PROCESS_STATUS = "process_status"


class JobTypeRecovery(models.Model):
    """One step of a job type's ordered recovery list (POMS `campaign_recoveries`)."""

    job_type = models.ForeignKey(JobType, on_delete=models.CASCADE, related_name="recoveries")
    position = models.PositiveSmallIntegerField()
    recovery_type = models.CharField(max_length=30, choices=RecoveryType.choices)
    param_overrides = overrides_field()

    class Meta:
        ordering = ["job_type", "position"]
        constraints = [
            models.UniqueConstraint(fields=["job_type", "position"], name="jobtyperecovery_unique_position"),
        ]

    def __str__(self):
        return f"{self.job_type} #{self.position}: {self.recovery_type}"


class Tag(Owned):
    name = models.CharField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["experiment", "name"], name="tag_unique_name")]

    def __str__(self):
        return self.name


class CampaignQuerySet(models.QuerySet):
    def for_list(self):
        return self.select_related("creator").prefetch_related("tags")

    def with_progress(self):
        """Files processed / total over the campaign's submissions (cached on each by wrapup).

        Reached through the reverse relation by name, so this room needs no import of the ledger.
        Originals define the total; recoveries add what they consumed of it.
        """
        return self.annotate(
            files_total=models.Sum(
                "stages__submissions__files_total", filter=models.Q(stages__submissions__recovery_parent=None)
            ),
            files_consumed=models.Sum("stages__submissions__files_consumed"),
        )


class Campaign(Owned):
    """A named group of stages forming a DAG (POMS `campaigns`)."""

    TEST = "test"
    name = models.CharField(max_length=200)
    active = models.BooleanField(default=True)
    campaign_type = models.CharField(
        max_length=10, blank=True, choices=[("", "regular"), (TEST, "test")], help_text="test: every launch is a test"
    )
    keywords = models.JSONField(default=dict, blank=True, help_text="%(name)s substitutions")
    # Stage defaults and editor positions, as POMS's `defaults` JSON.
    defaults = models.JSONField(default=dict, blank=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="campaigns")
    data_handling = models.CharField(
        max_length=20, blank=True, choices=[("", "default"), ("catalog", "built-in catalogue"), ("samweb", "SAM")]
    )

    objects = CampaignQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["experiment", "name"], name="campaign_unique_name")]
        indexes = [
            # Campaign list: keyset by name within an experiment.
            models.Index(fields=["experiment", "name", "id"], name="campaign_list_by_name"),
        ]

    def __str__(self):
        return self.name

    @property
    def is_test(self):
        return self.campaign_type == self.TEST

    @property
    def percent_done(self):
        total = getattr(self, "files_total", None)
        return min(100, round(100 * (self.files_consumed or 0) / total)) if total else None

    @property
    def default_overrides(self):
        return (self.defaults or {}).get("defaults", {}).get("param_overrides", [])


class StageType(models.TextChoices):
    REGULAR = "regular"
    TEST = "test"
    GENERATOR = "generator"
    APPROVAL = "approval"
    DATATRANSFER = "datatransfer"


class CompletionType(models.TextChoices):
    LOCATED = "located"
    COMPLETE = "complete"


class Stage(Owned):
    """A campaign stage: what to run, on which data, how to call it done (POMS `campaign_stages`)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="stages")
    name = models.CharField(max_length=200)
    job_type = models.ForeignKey(JobType, on_delete=models.PROTECT, related_name="stages")
    login_setup = models.ForeignKey(LoginSetup, on_delete=models.PROTECT, related_name="stages")
    vo_role = models.CharField(max_length=30, default="Production")
    software_version = models.CharField(max_length=100, blank=True)
    dataset = models.TextField(blank=True, help_text="dataset, split data, or from_parent")
    split_type = models.CharField(max_length=200, blank=True, default="None")
    # POMS cs_last_split: an index, run number, unix time or snapshot id depending on the split type.
    split_cursor = models.BigIntegerField(null=True, blank=True)
    test_split_type = models.CharField(max_length=200, blank=True)
    completion_type = models.CharField(max_length=10, choices=CompletionType.choices, default=CompletionType.LOCATED)
    completion_pct = models.FloatField(
        default=95, validators=[MinValueValidator(0.001), MaxValueValidator(100)], help_text="0 < pct ≤ 100"
    )
    param_overrides = overrides_field()
    test_param_overrides = overrides_field()
    merge_overrides = models.BooleanField(default=False, help_text="prepend the campaign default overrides")
    output_ancestor_depth = models.PositiveSmallIntegerField(default=1)
    stage_type = models.CharField(max_length=20, choices=StageType.choices, default=StageType.REGULAR)
    hold_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    hold_role = models.CharField(max_length=20, blank=True)
    default_clear_cronjob = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "name"], name="stage_unique_name_in_campaign"),
            models.CheckConstraint(
                condition=models.Q(completion_pct__gt=0, completion_pct__lte=100), name="stage_completion_pct_range"
            ),
        ]

    def __str__(self):
        return f"{self.campaign.name}/{self.name}"

    @property
    def is_held(self):
        return self.hold_by_id is not None


class StageDependency(models.Model):
    """An edge of the DAG: `downstream` runs on outputs of `upstream` matching `file_pattern`.

    (POMS `campaign_dependencies`: needs = upstream, provides = downstream.)
    """

    upstream = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="downstream_links")
    downstream = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="upstream_links")
    file_pattern = models.CharField(max_length=500, default="%")

    class Meta:
        constraints = [
            # upstream == downstream is allowed: POMS's self-dependency relaunches a stage on its next split.
            models.UniqueConstraint(fields=["upstream", "downstream"], name="stagedependency_unique_edge"),
        ]

    def __str__(self):
        return f"{self.upstream.name} → {self.downstream.name}"


class Watch(models.Model):
    """A user following a campaign (POMS `experimenters_watching`)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="watchers")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "campaign"], name="watch_unique")]

    def __str__(self):
        return f"{self.user} watches {self.campaign}"


class ConfigSnapshot(models.Model):
    """The configuration a submission actually ran with, content-addressed.

    Unlike POMS's three snapshot tables, one row holds stage + job type + login setup +
    campaign keywords, keyed by the SHA-256 of its canonical JSON: an unchanged config maps to
    the same row however many times it is launched.
    """

    digest = models.CharField(max_length=64, unique=True)
    content = models.JSONField()
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.digest[:12]

    @staticmethod
    def digest_of(content):
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()
