"""Load the demo experiment: users with each role, a login setup, job types that submit a real
payload to the local batch system, campaign mc_demo (gen → sim → reco) and an analyst's own
campaign. gen declares its outputs into the catalogue; sim and reco start a project over their
input dataset and their jobs consume it file by file (bin/demo_payload, bin/poms_catalog).
Safe to run again: existing rows are kept."""

import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from campaigns.models import Campaign, JobType, JobTypeRecovery, LoginSetup, Stage, StageDependency, Tag
from poms.models import Experiment, Membership, Role

USERS = [
    ("boss", Role.SUPERUSER),
    ("prod", Role.PRODUCTION),
    ("shifter", Role.SHIFTER),
    ("analyst", Role.ANALYSIS),
]
PASSWORD = "demo"


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--jobs", type=int, default=5, help="jobs per launch")
        parser.add_argument("--fail-fraction", default=os.environ.get("POMS_DEMO_FAIL_FRACTION", "0.2"))
        parser.add_argument("--sleep", default=os.environ.get("POMS_DEMO_SLEEP", "6"))
        parser.add_argument(
            "--batch", choices=["local", "slurm"], default=os.environ.get("POMS_DEMO_BATCH", "local"),
            help="batch system of the demo job types (POMS_DEMO_BATCH); switching rewrites them",
        )  # fmt: skip

    @transaction.atomic
    def handle(self, *args, **opts):
        exp, _ = Experiment.objects.get_or_create(name="demo", defaults={"description": "POMS demo experiment"})
        users = {}
        User = get_user_model()
        for name, role in USERS:
            user, created = User.objects.get_or_create(username=name)
            if created:
                user.set_password(PASSWORD)
                user.save()
            Membership.objects.update_or_create(user=user, experiment=exp, defaults={"role": role})
            users[name] = user
        prod = users["prod"]
        owned = {"experiment": exp, "creator": prod, "creator_role": Role.PRODUCTION}
        bin_dir = settings.BASE_DIR / "bin"
        login, _ = LoginSetup.objects.update_or_create(
            name="demo-local",
            experiment=exp,
            defaults={
                **owned,
                "launch_setup": f"export DEMO_FAIL_FRACTION={opts['fail_fraction']} DEMO_SLEEP={opts['sleep']}"
                f" DEMO_DATASET=%(dataset)s DEMO_VERSION=%(version)s POMS_DEMO_BIN={bin_dir}",
            },
        )
        submit, parameters = self.submit_command(opts, bin_dir)
        # update_or_create: switching POMS_DEMO_BATCH takes effect on an existing demo too.
        job_type, _ = JobType.objects.update_or_create(
            name="demo-payload",
            experiment=exp,
            defaults={
                **owned,
                "launch_script": submit,
                "definition_parameters": parameters,
                "output_file_patterns": "%.root",
                "batch_system": opts["batch"],
            },
        )
        # Stages that read a dataset: the launch starts the project its jobs take files from (and
        # reports it to POMS) before it submits; a missing dataset fails the launch, not the jobs.
        # $POMS4_… are the launch's environment, expanded by the launch shell; %(dataset)s arrives
        # shell-quoted from compose.
        consumer, _ = JobType.objects.update_or_create(
            name="demo-consumer",
            experiment=exp,
            defaults={
                **owned,
                "launch_script": 'export DEMO_PROJECT="poms_${POMS4_CAMPAIGN_STAGE_NAME}_${POMS4_SUBMISSION_ID}" && '
                f'{bin_dir / "poms_catalog"} start-project --project "$DEMO_PROJECT" --dataset %(dataset)s && '
                f"{submit}",
                "definition_parameters": parameters,
                "output_file_patterns": "%.root",
                "batch_system": opts["batch"],
            },
        )
        # Files that fail in sim/reco are retried once by a consumed_status recovery.
        JobTypeRecovery.objects.get_or_create(
            job_type=consumer, position=0, defaults={"recovery_type": "consumed_status"}
        )
        campaign, _ = Campaign.objects.get_or_create(
            name="mc_demo", experiment=exp, defaults={**owned, "keywords": {"energy": "1GeV"}}
        )
        campaign.tags.add(Tag.objects.get_or_create(name="demo", experiment=exp, defaults=owned)[0])
        stages = {}
        for name, dataset, stage_type, kind in [
            ("gen", "", "generator", job_type),
            ("sim", "from_parent", "regular", consumer),
            ("reco", "from_parent", "regular", consumer),
        ]:
            stages[name], _ = Stage.objects.get_or_create(
                name=name,
                campaign=campaign,
                defaults={
                    **owned,
                    "job_type": kind,
                    "login_setup": login,
                    "dataset": dataset,
                    "stage_type": stage_type,
                    "software_version": "v1_0",
                    "completion_type": "complete",
                    "test_param_overrides": [["-N ", "2"]],
                },
            )
        for up, down in [("gen", "sim"), ("sim", "reco")]:
            StageDependency.objects.get_or_create(
                upstream=stages[up], downstream=stages[down], defaults={"file_pattern": "%.root"}
            )
        analyst = {"experiment": exp, "creator": users["analyst"], "creator_role": Role.ANALYSIS}
        ana, _ = Campaign.objects.get_or_create(name="analyst_histos", experiment=exp, defaults=analyst)
        Stage.objects.get_or_create(
            name="histos",
            campaign=ana,
            defaults={**analyst, "job_type": job_type, "login_setup": login, "vo_role": "Analysis",
                      "completion_type": "complete", "dataset": "run1,run2,run3", "split_type": "list"},
        )  # fmt: skip
        self.stdout.write(f"demo jobs run on the {opts['batch']} batch system")
        self.stdout.write(f"demo experiment ready; users {', '.join(users)} (password {PASSWORD!r})")

    @staticmethod
    def submit_command(opts, bin_dir):
        """The demo's submit command and parameters for the chosen batch system."""
        payload = str(bin_dir / "demo_payload")
        if opts["batch"] == "slurm":
            out = settings.VAR_DIR / "job-output" / "demo"  # under POMS_JOB_OUTPUT_ROOTS for experiment demo
            out.mkdir(parents=True, exist_ok=True)
            # %%A_%%a: Slurm's own job and array-task placeholders, passed through compose.
            return "sbatch", [
                ["--array=", f"0-{opts['jobs'] - 1}"],
                ["-o ", f"{out}/%%A_%%a.out"],
                ["-e ", f"{out}/%%A_%%a.err"],
                ["", payload],
            ]
        return str(bin_dir / "poms_local_submit"), [
            ["-N ", str(opts["jobs"])],
            ["--queue-delay ", "2"],
            ["-- ", payload],
        ]
