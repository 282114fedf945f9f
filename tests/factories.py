"""Factories for the Experiment → Campaign → Stage → Submission → Job chain."""

import sys
from datetime import timedelta
from pathlib import Path

import factory
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from campaigns.models import Campaign, JobType, LoginSetup, Stage, Tag
from campaigns.services import snapshot_config
from poms.models import Experiment, Membership, Role
from sam_adapter.models import FileStatus
from submissions.models import Job, Status, StatusHistory, Submission

BIN = Path(settings.BASE_DIR) / "bin"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw")


class ExperimentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Experiment
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"exp{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    experiment = factory.SubFactory(ExperimentFactory)
    role = Role.PRODUCTION


class OwnedFactory(factory.django.DjangoModelFactory):
    experiment = factory.SubFactory(ExperimentFactory)
    creator = factory.SubFactory(UserFactory)
    creator_role = Role.PRODUCTION


class LoginSetupFactory(OwnedFactory):
    class Meta:
        model = LoginSetup

    name = factory.Sequence(lambda n: f"login{n}")
    launch_setup = "export DEMO_SLEEP=1 DEMO_FAIL_FRACTION=0"


class JobTypeFactory(OwnedFactory):
    class Meta:
        model = JobType

    name = factory.Sequence(lambda n: f"jobtype{n}")
    # `-N` jobs of the demo payload on the local batch system; tests shorten the sleep.
    launch_script = f"{sys.executable} {BIN / 'poms_local_submit'}"
    definition_parameters = factory.LazyFunction(
        lambda: [["-N ", "2"], ["--queue-delay ", "0.5"], ["-- ", str(BIN / "demo_payload")]]
    )


class CampaignFactory(OwnedFactory):
    class Meta:
        model = Campaign

    name = factory.Sequence(lambda n: f"campaign{n}")


class StageFactory(OwnedFactory):
    class Meta:
        model = Stage

    campaign = factory.SubFactory(
        CampaignFactory,
        experiment=factory.SelfAttribute("..experiment"),
        creator=factory.SelfAttribute("..creator"),
        creator_role=factory.SelfAttribute("..creator_role"),
    )
    name = factory.Sequence(lambda n: f"stage{n}")
    job_type = factory.SubFactory(JobTypeFactory, experiment=factory.SelfAttribute("..experiment"))
    login_setup = factory.SubFactory(LoginSetupFactory, experiment=factory.SelfAttribute("..experiment"))
    completion_type = "complete"


class SubmissionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Submission
        skip_postgeneration_save = True

    stage = factory.SubFactory(StageFactory)
    experiment = factory.SelfAttribute("stage.experiment")
    creator = factory.SelfAttribute("stage.creator")
    creator_role = factory.SelfAttribute("stage.creator_role")
    launcher = factory.SelfAttribute("stage.creator")
    batch_system = "local"
    status_changed = factory.LazyFunction(timezone.now)

    @factory.post_generation
    def history(obj, create, extracted, **kwargs):
        if create:
            StatusHistory.objects.create(submission=obj, status=obj.status, created=obj.status_changed)


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    submission = factory.SubFactory(SubmissionFactory)
    batch_job_id = factory.Sequence(lambda n: f"1.{n}")
    state_changed = factory.LazyFunction(timezone.now)


class TagFactory(OwnedFactory):
    class Meta:
        model = Tag

    name = factory.Sequence(lambda n: f"tag{n}")


def processed_submission(world, stage, cat, dataset, consume, parent=None):
    """A Completed submission whose job consumed `consume` of its project's files (others fail)
    and declared a located child per consumed file."""
    sub = SubmissionFactory(
        stage=stage, status=Status.COMPLETED, recovery_parent=parent, snapshot=snapshot_config(stage)
    )
    # created is auto_now_add; outputs must be newer than the submission, so move it back.
    Submission.objects.filter(pk=sub.pk).update(created=timezone.now() - timedelta(minutes=5))
    project = cat.start_project(f"poms_{stage.name}_{sub.pk}", dataset, submission_id=sub.pk)
    Submission.objects.filter(pk=sub.pk).update(params={"dataset": dataset, "project": project.name})
    while (f := cat.next_file(project, "p1")) is not None:
        if f.name in consume:
            cat.declare(f"{stage.name}_{f.name}", parents=[f.name], version="v2", location="/pnfs/out")
            cat.set_file_status(project, f.name, FileStatus.CONSUMED)
        else:
            cat.set_file_status(project, f.name, FileStatus.FAILED)
    cat.end_process(project, "p1")
    sub.refresh_from_db()
    return sub
