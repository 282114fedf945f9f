"""launch → poll → history through a real Celery worker on the real Redis broker."""

import pytest

from launches import services
from launches.tasks import launch_submission
from poms.permissions import actor_for
from submissions.models import Status, Submission

from .helpers import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_launch_reaches_completed_with_its_history(world, celery_worker):
    stage = world.production_stage
    sub = services.launch_stage(stage, actor=actor_for(world.users["production"], world.experiment))

    def polled_until_done():
        services.poll_batch_systems()  # what beat does every N seconds
        return Submission.objects.get(pk=sub.pk).status == Status.COMPLETED

    wait_for(lambda: Submission.objects.get(pk=sub.pk).batch_id, timeout=30, what="the worker to launch")
    wait_for(polled_until_done, timeout=60, interval=0.5, what="Completed")
    sub.refresh_from_db()
    statuses = list(sub.history.values_list("status", flat=True))
    assert statuses[0] == Status.NEW and statuses[-1] == Status.COMPLETED
    assert Status.RUNNING in statuses
    assert len(statuses) == len(set(statuses))  # one row per transition
    assert sub.jobs_completed == 2 and {j.exit_code for j in sub.jobs.all()} == {0}


def test_a_duplicated_launch_task_runs_nothing_twice(world, celery_worker):
    sub = services.launch_stage(world.production_stage, actor=actor_for(world.users["production"], world.experiment))
    launch_submission.delay(sub.pk)  # the same message delivered again, racing the first
    launch_submission.delay(sub.pk)

    def polled_until_done():
        services.poll_batch_systems()
        return Submission.objects.get(pk=sub.pk).status == Status.COMPLETED

    wait_for(polled_until_done, timeout=60, interval=0.5, what="Completed")
    sub.refresh_from_db()
    assert open(sub.launch_log).read().count("Submitted local cluster") == 1
    assert sub.jobs.count() == 2
