import os
import threading

import pytest
from celery.contrib.testing.worker import start_worker
from django.test import Client

from campaigns.models import JobTypeRecovery, StageDependency
from poms.celery import app
from poms.models import Role
from sam_adapter.catalog import CatalogHandler

from .factories import ExperimentFactory, MembershipFactory, StageFactory, UserFactory

ROLES = [Role.ANALYSIS, Role.SHIFTER, Role.PRODUCTION, Role.SUPERUSER]


@pytest.fixture(autouse=True)
def _no_stray_launch_tasks(request, monkeypatch):
    """Launches committed by a transactional test reach the broker only when the test asked for a
    worker. Otherwise the session's worker (started by an earlier test) would run them while the
    test runs or, worse, while its teardown truncates the tables it reads."""
    marker = request.node.get_closest_marker("django_db")
    transactional = marker is not None and marker.kwargs.get("transaction", False)
    if transactional and not {"celery_worker", "beat"} & set(request.fixturenames):
        from launches.tasks import launch_submission

        monkeypatch.setattr(launch_submission, "delay_on_commit", lambda *args, **kwargs: None)


@pytest.fixture(autouse=True)
def _isolated_dirs(settings, tmp_path):
    """Launch logs and the local batch system's records go to a per-test directory."""
    settings.POMS_LOG_ROOT = tmp_path / "logs"
    settings.POMS_LOCAL_BATCH_ROOT = tmp_path / "local_batch"
    settings.POMS_JOB_OUTPUT_ROOTS = [str(tmp_path)]
    # Password hashing is deliberately slow; tests create many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


class World:
    """A named little world: one experiment, a member per role, an outsider, and stages
    owned under the production role and by the analyst."""

    def __init__(self):
        self.experiment = ExperimentFactory(name="nova")
        self.users = {}
        for role in ROLES:
            user = UserFactory(username=role.value.replace("-", "_"))
            MembershipFactory(user=user, experiment=self.experiment, role=role)
            self.users[role.value] = user
        self.users["non-member"] = UserFactory(username="outsider")
        self.production_stage = StageFactory(
            experiment=self.experiment, creator=self.users["production"], creator_role=Role.PRODUCTION, name="gen"
        )
        self.analysis_stage = StageFactory(
            experiment=self.experiment, creator=self.users["analysis"], creator_role=Role.ANALYSIS, name="ana"
        )

    def client(self, who):
        client = Client()
        if who != "anonymous":
            client.force_login(self.users[who])
        return client


@pytest.fixture
def world(db):
    return World()


@pytest.fixture(scope="session")
def celery_worker():
    """A worker thread of our real app on the real Redis broker (its own database number, so
    tests never consume the messages of a running `make run`)."""
    base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0]
    app.conf.broker_url = f"{base}/{os.environ.get('POMS_TEST_REDIS_DB', '14')}"
    app.conf.broker_connection_retry_on_startup = True
    with start_worker(
        app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=30, queues=["celery", "poll"]
    ) as worker:
        yield worker


@pytest.fixture
def beat(celery_worker):
    """What Celery beat does, faster: queue a poll every second while the test runs."""
    from launches.tasks import poll_batch_systems

    stop = threading.Event()

    def tick():
        while not stop.wait(1.0):
            poll_batch_systems.delay()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()


@pytest.fixture
def chain(world):
    """sim (located at 50 %) → reco; sim's job type recovers consumed_status then process_status."""
    sim = world.production_stage
    sim.completion_type, sim.completion_pct, sim.software_version = "located", 50, "v2"
    sim.save()
    JobTypeRecovery.objects.create(job_type=sim.job_type, position=0, recovery_type="consumed_status",
                                   param_overrides=[["--memory=", "4000"]])  # fmt: skip
    JobTypeRecovery.objects.create(job_type=sim.job_type, position=1, recovery_type="process_status")
    reco = StageFactory(experiment=world.experiment, campaign=sim.campaign, creator=sim.creator, name="reco",
                        job_type=sim.job_type, login_setup=sim.login_setup)  # fmt: skip
    StageDependency.objects.create(upstream=sim, downstream=reco, file_pattern="%.root")
    cat = CatalogHandler(world.experiment)
    for i in range(4):
        cat.declare(f"gen_{i}.root", dataset="gen_out", location="/pnfs")
    return sim, reco, cat
