"""Celery tasks: thin, take ids, safe to run twice; the work is in services."""

from celery import shared_task

from . import services
from . import wrapup as workflow


@shared_task(acks_late=True)
def launch_submission(submission_id):
    if services.run_launch(submission_id):
        # See the first jobs at once rather than at the next beat tick.
        poll_batch_systems.delay(submission_ids=[submission_id])


@shared_task
def poll_batch_systems(submission_ids=None):
    services.poll_batch_systems(submission_ids=submission_ids)


@shared_task
def mark_failed_launches():
    services.mark_failed_launches()


@shared_task
def wrapup():
    workflow.wrapup()
