"""The built-in file catalogue (DESIGN §7): files with metadata and parentage, named
datasets, snapshots, and projects that hand files to jobs and record what they did.

It emulates the part of SAM POMS relies on, so every file-based feature works without SAM.
Submissions are referred to by number only: the ledger lives in a room above this one.
"""

from django.db import models
from django.utils import timezone

from poms.models import Experiment


class CatalogFile(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=255)
    size = models.BigIntegerField(default=0)
    checksum = models.CharField(max_length=100, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    version = models.CharField(max_length=100, blank=True)
    run_number = models.IntegerField(null=True, blank=True)
    subrun = models.IntegerField(null=True, blank=True)
    event_count = models.IntegerField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)
    end_time = models.DateTimeField(null=True, blank=True)
    # Where the file physically is; empty means declared but not located ("availability physical" fails).
    location = models.CharField(max_length=500, blank=True)
    declared_by_submission = models.BigIntegerField(null=True, blank=True)
    parents = models.ManyToManyField(
        "self", symmetrical=False, through="Parentage", through_fields=("child", "parent"), related_name="children"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["experiment", "name"], name="catalogfile_unique_name")]
        indexes = [
            # Located checks and dependency datasets filter children by version and creation time.
            models.Index(fields=["experiment", "version", "created"], name="catalogfile_version_created"),
            # Per-submission file reports.
            models.Index(fields=["declared_by_submission"], name="catalogfile_by_submission"),
        ]

    def __str__(self):
        return self.name


class Parentage(models.Model):
    parent = models.ForeignKey(CatalogFile, on_delete=models.CASCADE, related_name="+")
    child = models.ForeignKey(CatalogFile, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["parent", "child"], name="parentage_unique")]
        # ischildof / isparentof walk both directions.
        indexes = [models.Index(fields=["child", "parent"], name="parentage_by_child")]

    def __str__(self):
        return f"{self.parent_id} → {self.child_id}"


class NamedDataset(models.Model):
    """A named dataset: a stored query (like a SAM definition), or, for datasets jobs fill by
    declaring files into them (poms_depends_<sid>_1 of generator stages), an explicit list."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=255)
    query = models.JSONField(null=True, blank=True, help_text="serialised query; null = explicit file list")
    files = models.ManyToManyField(CatalogFile, blank=True, related_name="+")
    # The launch whose jobs made this explicit dataset by declaring into it: only they may add to
    # it. A plain number, like the submission ids elsewhere in this room.
    submission_id = models.BigIntegerField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["experiment", "name"], name="nameddataset_unique_name")]

    def __str__(self):
        return self.name


class Snapshot(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    files = models.ManyToManyField(CatalogFile, related_name="+")

    def __str__(self):
        return f"snapshot {self.pk}"


class FileStatus(models.TextChoices):
    """Per-file consumption status in a project, SAM's vocabulary."""

    PENDING = "pending"  # not delivered yet
    DELIVERED = "delivered"
    CONSUMED = "consumed"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNKNOWN = "unknown"


class Project(models.Model):
    """Hands the files of a dataset snapshot to the jobs of one submission."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=255)
    dataset = models.CharField(max_length=255)
    snapshot = models.ForeignKey(Snapshot, on_delete=models.PROTECT, related_name="+")
    submission_id = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=20, default="running")
    created = models.DateTimeField(auto_now_add=True)
    ended = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["experiment", "name"], name="project_unique_name")]

    def __str__(self):
        return self.name


class ProjectFile(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="files")
    file = models.ForeignKey(CatalogFile, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=10, choices=FileStatus.choices, default=FileStatus.PENDING)
    process = models.CharField(max_length=100, blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "file"], name="projectfile_unique")]
        indexes = [
            # "next file" claims the first pending file of a project.
            models.Index(fields=["project", "id"], name="projectfile_pending", condition=models.Q(status="pending")),
        ]

    def __str__(self):
        return f"{self.project}: {self.file} {self.status}"
