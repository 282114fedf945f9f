"""Accounts: experiments are tenants, memberships carry a role (DESIGN §8)."""

from django.conf import settings
from django.db import models


class Role(models.TextChoices):
    ANALYSIS = "analysis", "analysis"
    SHIFTER = "production-shifter", "production-shifter"
    PRODUCTION = "production", "production"
    SUPERUSER = "superuser", "superuser"


# Roles in increasing power; the acting role is capped by the membership role.
ROLE_ORDER = [Role.ANALYSIS, Role.SHIFTER, Role.PRODUCTION, Role.SUPERUSER]


def role_rank(role):
    return ROLE_ORDER.index(role)


class Experiment(models.Model):
    """A tenant (POMS `experiments`): `nova`, `dune`, `demo`, …"""

    name = models.SlugField(max_length=32, unique=True)
    description = models.CharField(max_length=200, blank=True)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Membership(models.Model):
    """A user's role in one experiment (POMS `experiments_experimenters`)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.ANALYSIS)
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "experiment"], name="membership_one_per_user_experiment"),
        ]

    def __str__(self):
        return f"{self.user} in {self.experiment} as {self.role}"


class Preference(models.Model):
    """The experiment and acting role a user last picked in the header (POMS session_*)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="poms_preference")
    experiment = models.ForeignKey(Experiment, null=True, blank=True, on_delete=models.SET_NULL)
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.ANALYSIS)

    def __str__(self):
        return f"{self.user}: {self.experiment} / {self.role}"


class Owned(models.Model):
    """Ownership columns shared by configuration and submissions (POMS §2 conventions).

    `creator_role` is the acting role the object was made under; it drives permissions and
    never changes.
    """

    experiment = models.ForeignKey(Experiment, on_delete=models.PROTECT, related_name="+")
    creator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    creator_role = models.CharField(max_length=20, choices=Role.choices, default=Role.PRODUCTION)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class ApiToken(models.Model):
    """A personal API token for scripts, the CLI and job callbacks. Only its hash is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    digest = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.user}: {self.name}"


class CallbackToken(models.Model):
    """The token one launch receives (POMS_SUBMISSION_TOKEN): it acts for the launcher, in one
    experiment, on one submission only — enough for its wrapper to report job ids and for its
    jobs to use the file catalogue. `submission_id` is a plain number: the ledger lives in a
    room that depends on this one, not the other way round."""

    digest = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="+")
    submission_id = models.BigIntegerField(db_index=True)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"callback token of submission {self.submission_id}"
