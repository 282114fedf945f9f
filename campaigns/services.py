"""State changes of configuration."""

from django.forms.models import model_to_dict

from .models import ConfigSnapshot

STAGE_FIELDS = (
    "id", "name", "vo_role", "software_version", "dataset", "split_type", "split_cursor", "test_split_type",
    "completion_type", "completion_pct", "param_overrides", "test_param_overrides", "merge_overrides",
    "output_ancestor_depth", "stage_type", "creator_role",
)  # fmt: skip
JOB_TYPE_FIELDS = (
    "id",
    "name",
    "launch_script",
    "definition_parameters",
    "output_file_patterns",
    "batch_system",
    "raw_keys",
)
LOGIN_SETUP_FIELDS = ("id", "name", "launch_host", "launch_account", "launch_setup")


def config_of(stage):
    """Everything a launch of `stage` depends on, as plain JSON."""
    campaign = stage.campaign
    return {
        "experiment": stage.experiment.name,
        "campaign": {
            "id": campaign.id,
            "name": campaign.name,
            "keywords": campaign.keywords,
            "default_overrides": campaign.default_overrides,
            "campaign_type": campaign.campaign_type,
        },
        "stage": model_to_dict(stage, fields=STAGE_FIELDS) | {"id": stage.id},
        "job_type": model_to_dict(stage.job_type, fields=JOB_TYPE_FIELDS) | {"id": stage.job_type_id},
        "login_setup": model_to_dict(stage.login_setup, fields=LOGIN_SETUP_FIELDS) | {"id": stage.login_setup_id},
        "recoveries": [
            {"type": r.recovery_type, "param_overrides": r.param_overrides} for r in stage.job_type.recoveries.all()
        ],
    }


def snapshot_config(stage):
    """The ConfigSnapshot for the stage's current configuration: same config → same row.

    The split cursor is left out of the digest: advancing a split is not a config change.
    """
    content = config_of(stage)
    keyed = {**content, "stage": {k: v for k, v in content["stage"].items() if k != "split_cursor"}}
    digest = ConfigSnapshot.digest_of(keyed)
    snapshot, _ = ConfigSnapshot.objects.get_or_create(digest=digest, defaults={"content": keyed})
    return snapshot
