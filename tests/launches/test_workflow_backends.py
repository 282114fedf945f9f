"""The workflow on both data-handling backends (DESIGN §4 wrapup, §7 data handling).

Every test runs twice, through the `backend` fixture: on the built-in catalogue, and on SAM —
SamwebHandler speaking real HTTP to the stub SAM server (tests/fakes/sam_server.py), which
evaluates the dimension strings the samweb backend prints. A test builds its world with one
small builder API (declare files, define datasets, run projects with per-file consumption
statuses): CatalogHandler calls for the catalogue, the stub's in-memory catalogue filled
directly for SAM. The campaign is pointed at the backend under test, and the *other* backend
is the site default, so a code path that ignores the campaign's choice fails loudly.

Follow-up launches go through launches.services.launch_stage; its Celery enqueue happens on
commit, which never fires in these non-transactional tests, so no broker is involved.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.core.cache import caches
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, JobTypeRecovery, StageDependency
from launches import services
from launches import wrapup as workflow
from launches.dependencies import dependency_dataset
from launches.models import FollowUp
from launches.splits import SplitsExhausted, next_split
from poms.models import Role
from poms.permissions import actor_for
from sam_adapter import query as q
from sam_adapter.backends import handler_for
from sam_adapter.catalog import CatalogHandler
from sam_adapter.models import CatalogFile, FileStatus, ProjectFile
from sam_adapter.samweb import to_dims
from submissions import services as ledger
from submissions.datasets import handler_of
from submissions.models import Status, Submission
from tests.factories import StageFactory
from tests.fakes.sam_server import SamServer

pytestmark = pytest.mark.django_db

OLD = datetime(2024, 1, 1, tzinfo=UTC)  # inputs were made long before any submission
GEN = [f"gen_{i}.root" for i in range(4)]


# --- the builder: one world, two backends ---------------------------------------------------------


class Backend:
    """What a test needs to build a world, whichever backend holds it."""

    name = ""

    def __init__(self, experiment):
        self.experiment = experiment

    @property
    def handler(self):
        """The product's handler for this backend, as wrapup and the pages make it."""
        return handler_for(self.experiment, self.name)

    def adopt(self):
        """Point every campaign of the experiment at this backend."""
        Campaign.objects.filter(experiment=self.experiment).update(data_handling=self.name)

    def declare(self, name, *, version="v1", located=True, parents=(), run=None, subrun=None, end_time=None,
                created=None, dataset=None):  # fmt: skip
        raise NotImplementedError

    def define(self, name, query):
        raise NotImplementedError

    def project(self, name, dataset, statuses, *, default="failed", submission_id=None):
        """A project over `dataset` as it is now; each file gets statuses.get(file, default)
        (None: never delivered). Returns the project's file names."""
        raise NotImplementedError

    def locate(self, name):
        raise NotImplementedError

    def contents(self, name):
        """The files the named dataset holds, read from the backend's own store."""
        raise NotImplementedError


class Catalog(Backend):
    name = "catalog"

    def __init__(self, experiment):
        super().__init__(experiment)
        self.cat = CatalogHandler(experiment)

    def declare(self, name, *, version="v1", located=True, parents=(), run=None, subrun=None, end_time=None,
                created=None, dataset=None):  # fmt: skip
        self.cat.declare(
            name, parents=list(parents), dataset=dataset, version=version, location="/pnfs/out" if located else "",
            run_number=run, subrun=subrun, end_time=end_time, created=created or timezone.now(),
        )  # fmt: skip

    def define(self, name, query):
        self.cat.define(name, query)

    def project(self, name, dataset, statuses, *, default="failed", submission_id=None):
        project = self.cat.start_project(name, dataset, submission_id=submission_id)
        files = sorted(project.snapshot.files.values_list("name", flat=True))
        for f in files:
            status = statuses.get(f, default)
            if status in (FileStatus.CONSUMED, FileStatus.FAILED, FileStatus.SKIPPED):
                self.cat.set_file_status(project, f, status)
            elif status is not None:  # delivered, unknown: what a job left behind
                ProjectFile.objects.filter(project=project, file__name=f).update(status=status, process="p1")
        self.cat.end_process(project, "builder")  # completes the project when nothing is left to hand out
        return files

    def locate(self, name):
        CatalogFile.objects.filter(experiment=self.experiment, name=name).update(location="/pnfs/out")

    def contents(self, name):
        return self.cat.list_files(q.Dataset(name))


class Sam(Backend):
    name = "samweb"

    def __init__(self, experiment, server):
        super().__init__(experiment)
        self.server = server
        self.sam = server.catalogue
        self.members = {}  # explicit datasets (jobs declaring into them) → file names

    def declare(self, name, *, version="v1", located=True, parents=(), run=None, subrun=None, end_time=None,
                created=None, dataset=None):  # fmt: skip
        self.sam.add_file(
            name, version=version, availability="physical" if located else "virtual", parents=tuple(parents),
            run_number=run, subrun=subrun or 0, end_time=end_time, create_date=created or timezone.now(),
        )  # fmt: skip
        if dataset:
            self.members.setdefault(dataset, []).append(name)
            self.sam.definitions[dataset] = f"snapshot_id {self.sam.add_snapshot(self.members[dataset])}"

    def define(self, name, query):
        self.sam.define(name, to_dims(query))

    def project(self, name, dataset, statuses, *, default="failed", submission_id=None):
        files = self.sam.evaluate(f"defname:{dataset}")
        wanted = {f: statuses.get(f, default) for f in files}
        done = all(s not in (None, "delivered") for s in wanted.values())
        self.sam.add_project(name, wanted, status="completed" if done else "running", dataset=dataset)
        return files

    def locate(self, name):
        self.sam.files[name].availability = "physical"

    def contents(self, name):
        return self.sam.evaluate(f"defname:{name}")


@pytest.fixture(params=["catalog", "samweb"])
def backend(request, world, settings):
    caches["default"].clear()  # SamwebHandler's failing-URL memory
    settings.POMS_SAM_TIMEOUT, settings.POMS_SAM_RETRIES, settings.POMS_SAM_BACKOFF = 2.0, 1, 0.01
    settings.POMS_LAUNCH_FOLLOWUPS = True
    if request.param == "catalog":
        settings.POMS_DATA_HANDLER = "samweb"  # the default, which the campaign overrides
        settings.POMS_SAM_BASE = "http://127.0.0.1:9"  # nothing listens: using it fails fast
        built = Catalog(world.experiment)
        built.adopt()
        yield built
        return
    settings.POMS_DATA_HANDLER = "catalog"
    with SamServer() as server:
        settings.POMS_SAM_BASE = server.url
        built = Sam(world.experiment, server)
        built.adopt()
        yield built


# --- the standard chain and what its jobs do ------------------------------------------------------


@dataclass
class Flow:
    sim: object
    reco: object


@pytest.fixture
def flow(world, backend):
    """sim (located at 50 %, version v2) → reco on sim's *.root outputs; gen_0…gen_3 located in gen_out."""
    sim = world.production_stage
    sim.name, sim.completion_type, sim.completion_pct, sim.software_version = "sim", "located", 50, "v2"
    sim.save()
    reco = StageFactory(experiment=world.experiment, campaign=sim.campaign, creator=sim.creator, name="reco",
                        job_type=sim.job_type, login_setup=sim.login_setup)  # fmt: skip
    StageDependency.objects.create(upstream=sim, downstream=reco, file_pattern="%.root")
    for name in GEN:
        backend.declare(name, dataset="gen_out", created=OLD)
    backend.adopt()
    return Flow(sim, reco)


def recoveries(stage, *kinds, overrides=None):
    for position, kind in enumerate(kinds):
        JobTypeRecovery.objects.create(job_type=stage.job_type, position=position, recovery_type=kind,
                                       param_overrides=(overrides or {}).get(kind, []))  # fmt: skip


def launch(stage, dataset=None, user=None):
    return services.launch_stage(stage, actor=actor_for(user or stage.creator, stage.experiment), dataset=dataset)


def out(stage, name):
    return f"{stage.name}_{name}"


def process(backend, sub, statuses=None, *, consume=(), default="failed", outputs=True, located=True):
    """`sub`'s jobs ran: a project over its dataset with the given consumption statuses, one output
    `<stage>_<input>` per consumed input (version = the stage's), then Completed."""
    statuses = {**dict.fromkeys(consume, "consumed"), **(statuses or {})}
    Submission.objects.filter(pk=sub.pk).update(created=timezone.now() - timedelta(minutes=5))
    sub.refresh_from_db()
    project = f"poms_{sub.stage.name}_{sub.pk}"
    files = backend.project(project, sub.dataset, statuses, default=default, submission_id=sub.pk)
    if outputs:
        for name in files:
            if statuses.get(name, default) == "consumed":
                backend.declare(out(sub.stage, name), parents=[name], version=sub.stage.software_version or "v1",
                                located=located)  # fmt: skip
    Submission.objects.filter(pk=sub.pk).update(params={**sub.params, "project": project})
    assert ledger.set_status(sub.pk, Status.COMPLETED, cause="test: its jobs finished")
    sub.refresh_from_db()
    return sub


def cause(sub):
    return sub.history.order_by("pk").last().cause


# --- wrapup: Located --------------------------------------------------------------------------------


def test_complete_stages_are_located_at_once(backend, flow):
    flow.sim.completion_type = "complete"
    flow.sim.save()
    sub = process(backend, launch(flow.sim, "gen_out"), outputs=False)  # every file failed, nothing declared
    assert workflow.wrapup() == [sub.pk]
    sub.refresh_from_db()
    assert sub.status == Status.LOCATED and cause(sub) == "completion type complete"
    assert workflow.wrapup() == []


def test_located_when_enough_outputs_are_located(backend, flow):
    sub = process(backend, launch(flow.sim, "gen_out"), consume=GEN[:3])
    assert workflow.wrapup() == [sub.pk]
    sub.refresh_from_db()
    assert sub.status == Status.LOCATED and cause(sub) == "outputs located: 3 ≥ 1.5 (50 %)"
    assert (sub.files_total, sub.files_consumed, sub.files_failed) == (4, 3, 1)


def test_waits_until_enough_matching_outputs_are_located(backend, flow):
    sim = flow.sim
    sim.completion_pct = 75
    sim.save()
    sub = process(backend, launch(sim, "gen_out"), consume=GEN, outputs=False)
    backend.declare(out(sim, GEN[0]), parents=[GEN[0]], version="v2")
    backend.declare(out(sim, GEN[1]), parents=[GEN[1]], version="v2", located=False)
    backend.declare("sim_gen_2.log", parents=[GEN[2]], version="v2")  # not the dependency's pattern
    backend.declare("sim_gen_2_old.root", parents=[GEN[2]], version="v1")  # another software version
    backend.declare(out(sim, GEN[3]), parents=[GEN[3]], version="v2", created=OLD)  # older than the submission
    assert workflow.wrapup() == []  # 1 < 3
    backend.declare(out(sim, GEN[2]), parents=[GEN[2]], version="v2")
    assert workflow.wrapup() == []  # 2 < 3
    backend.locate(out(sim, GEN[1]))
    assert workflow.wrapup() == [sub.pk]
    sub.refresh_from_db()
    assert cause(sub) == "outputs located: 3 ≥ 3 (75 %)"


def test_not_located_in_time_is_flagged(backend, flow, settings):
    sub = process(backend, launch(flow.sim, "gen_out"), consume=GEN[:1], located=False)
    assert workflow.wrapup() == []
    settings.POMS_LOCATED_TIMEOUT = 60
    assert workflow.wrapup() == [sub.pk]
    sub.refresh_from_db()
    assert sub.status == Status.LOCATED and sub.params["located_by_timeout"] and cause(sub).startswith("timeout")


# --- recovery ---------------------------------------------------------------------------------------


def test_recovery_first_then_dependents(backend, flow):
    sim, reco = flow.sim, flow.reco
    recoveries(sim, "consumed_status", "process_status", overrides={"consumed_status": [["--memory=", "4000"]]})
    first = process(backend, launch(sim, "gen_out"), consume=GEN[:3])
    assert workflow.wrapup() == [first.pk]

    recovery = Submission.objects.get(recovery_parent=first)
    assert recovery.stage == sim and recovery.params["overrides"] == [["--memory=", "4000"]]
    assert re.fullmatch(rf"poms_recover_[0-9a-f]{{8}}_{first.pk}_0", recovery.dataset)
    assert backend.contents(recovery.dataset) == [GEN[3]]  # exactly the failed input
    assert not Submission.objects.filter(stage=reco).exists()  # dependents wait for recoveries
    first.refresh_from_db()
    entry = first.params["workflow"]["recoveries"][0]
    assert (entry["type"], entry["count"], entry["name"]) == ("consumed_status", 1, recovery.dataset)

    # The recovery processes its file; nothing is left, so the original's dependents, on all outputs.
    process(backend, recovery, consume=[GEN[3]])
    assert workflow.wrapup() == [recovery.pk]
    downstream = Submission.objects.get(stage=reco)
    assert downstream.dataset == f"poms_depends_{first.pk}_1"
    assert backend.contents(downstream.dataset) == [out(sim, g) for g in GEN]
    assert Submission.objects.filter(stage=sim).count() == 2


RECOVERY_CASES = {
    # kind: (consumption statuses of gen_0…gen_3, the files the recovery must hold)
    "consumed_status": (["consumed", "failed", "skipped", "consumed"], [GEN[1], GEN[2]]),
    "delivered_not_consumed": (["consumed", "skipped", "delivered", "failed"], [GEN[1], GEN[2]]),
    "process_status": (["consumed", "failed", "unknown", None], GEN[1:]),
    "added_files": (["consumed"] * 4, ["gen_4.root"]),
    "pending_files": (["consumed"] * 4, [GEN[2], GEN[3]]),
}


@pytest.mark.parametrize("kind", list(RECOVERY_CASES))
def test_each_recovery_type_selects_its_files(backend, flow, kind):
    sim = flow.sim
    statuses, expected = RECOVERY_CASES[kind]
    recoveries(sim, kind)
    sub = launch(sim, "gen_out")
    if kind == "pending_files":
        process(backend, sub, dict(zip(GEN, statuses, strict=True)), outputs=False)
        backend.declare(out(sim, GEN[0]), parents=[GEN[0]], version="v2")
        backend.declare(out(sim, GEN[1]), parents=[GEN[1]], version="v2")
        backend.declare("sim_gen_2.log", parents=[GEN[2]], version="v2")  # not the output pattern
        backend.declare(out(sim, GEN[2]), parents=[GEN[2]], version="v2", located=False)  # declared, not located
        backend.declare(out(sim, GEN[3]), parents=[GEN[3]], version="v1")  # not this software version
    else:
        process(backend, sub, dict(zip(GEN, statuses, strict=True)))
    if kind == "added_files":
        backend.declare("gen_4.root", dataset="gen_out", created=OLD)  # joined the dataset after the project
    assert workflow.wrapup() == [sub.pk]
    recovery = Submission.objects.get(recovery_parent=sub)
    assert backend.contents(recovery.dataset) == expected
    if backend.name == "samweb" and kind == "process_status":  # SAM's own answer for the project's processes
        assert backend.server.calls("GET", f"/projects/name/{sub.params['project']}/recovery_dimensions")
    if backend.name == "samweb" and kind == "pending_files":  # as POMS's create_recovery_dataset prints it
        p = sub.params["project"]
        assert backend.sam.definitions[recovery.dataset] == (
            f"snapshot_for_project_name {p} minus (  isparentof:(  version v2 and file_name like %.root "
            f"and create_date > '{sub.created:%Y-%m-%dT%H:%M:%S%z}' ) )"
        )
    sub.refresh_from_db()
    assert [(e["type"], e["count"]) for e in sub.params["workflow"]["recoveries"]] == [(kind, len(expected))]
    assert FollowUp.objects.get(kind="recovery").position == 0
    assert not Submission.objects.filter(stage=flow.reco).exists()


def test_nothing_to_recover_launches_the_dependents(backend, flow):
    recoveries(flow.sim, "consumed_status", "process_status", "delivered_not_consumed", "pending_files")
    sub = process(backend, launch(flow.sim, "gen_out"), consume=GEN)
    assert workflow.wrapup() == [sub.pk]
    assert not Submission.objects.filter(recovery_parent=sub).exists()
    sub.refresh_from_db()
    assert sub.recovery_position == 4
    assert Submission.objects.get(stage=flow.reco).dataset == f"poms_depends_{sub.pk}_1"


def test_the_first_recovery_type_applies_twice_then_the_list_moves_on(backend, flow):
    sim = flow.sim
    recoveries(sim, "consumed_status", "process_status", overrides={"consumed_status": [["--memory=", "4000"]]})
    first = process(backend, launch(sim, "gen_out"), consume=GEN[:2])
    assert workflow.wrapup() == [first.pk]
    r1 = Submission.objects.get(recovery_parent=first)
    assert backend.contents(r1.dataset) == GEN[2:]

    process(backend, r1, consume=[GEN[2]])  # gen_3 fails again: consumed_status once more, on r1's project
    assert workflow.wrapup() == [r1.pk]
    r2 = Submission.objects.filter(recovery_parent=first).exclude(pk=r1.pk).get()
    assert backend.contents(r2.dataset) == [GEN[3]] and r2.dataset.endswith(f"_{first.pk}_0")
    assert r2.params["overrides"] == [["--memory=", "4000"]]
    workflow.follow_up(r1.pk)  # a second wrapup of r1 launches nothing more
    assert Submission.objects.filter(recovery_parent=first).count() == 2

    process(backend, r2, {GEN[3]: None})  # never delivered: the list moves on to process_status
    assert workflow.wrapup() == [r2.pk]
    r3 = Submission.objects.filter(recovery_parent=first).exclude(pk__in=[r1.pk, r2.pk]).get()
    assert backend.contents(r3.dataset) == [GEN[3]] and r3.dataset.endswith(f"_{first.pk}_1")
    assert r3.params["overrides"] == []

    process(backend, r3, consume=[GEN[3]])  # the end of the list: the original's dependents
    assert workflow.wrapup() == [r3.pk]
    first.refresh_from_db()
    assert first.recovery_position == 2
    types = [e["type"] for e in first.params["workflow"]["recoveries"]]
    assert types == ["consumed_status", "consumed_status", "process_status"]
    downstream = Submission.objects.get(stage=flow.reco)
    assert downstream.dataset == f"poms_depends_{first.pk}_1"
    assert backend.contents(downstream.dataset) == [out(sim, g) for g in GEN]


def test_wrapup_twice_launches_nothing_twice(backend, flow):
    recoveries(flow.sim, "consumed_status")
    needs_recovery = process(backend, launch(flow.sim, "gen_out"), consume=GEN[:2])
    backend.declare("more_0.root", dataset="more", created=OLD)
    done = process(backend, launch(flow.sim, "more"), consume=["more_0.root"])
    assert workflow.wrapup() == [needs_recovery.pk, done.pk]
    for sub in (needs_recovery, done):  # as if a second wrapup raced the first
        Submission.objects.filter(pk=sub.pk).update(status=Status.COMPLETED)
        workflow.follow_up(sub.pk)
    assert workflow.wrapup() == [needs_recovery.pk, done.pk]
    assert Submission.objects.filter(recovery_parent=needs_recovery).count() == 1
    assert Submission.objects.filter(recovery_parent=done).count() == 0
    assert Submission.objects.filter(stage=flow.reco).count() == 1
    assert FollowUp.objects.count() == 2


# --- dependents -----------------------------------------------------------------------------------


def test_the_dependency_dataset_holds_exactly_the_matching_outputs(backend, flow):
    sim = flow.sim
    sub = process(backend, launch(sim, "gen_out"), consume=GEN)
    backend.declare("sim_gen_0.log", parents=[GEN[0]], version="v2")  # another pattern
    backend.declare("sim_gen_1_v1.root", parents=[GEN[1]], version="v1")  # another version
    backend.declare("sim_gen_2_old.root", parents=[GEN[2]], version="v2", created=OLD)  # before the submission
    backend.declare("stray.root", version="v2")  # nobody's child
    backend.declare("sim_gen_3_late.root", parents=[GEN[3]], version="v2", located=False)  # not located yet
    assert workflow.wrapup() == [sub.pk]
    downstream = Submission.objects.get(stage=flow.reco)
    assert downstream.dataset == f"poms_depends_{sub.pk}_1" and downstream.launcher == sim.creator
    assert backend.contents(downstream.dataset) == [out(sim, g) for g in GEN]
    if backend.name == "samweb":  # defined in SAM exactly as POMS's dependency_definition prints it
        assert backend.sam.definitions[downstream.dataset] == (
            f"ischildof:(  snapshot_for_project_name {sub.params['project']} ) and version v2 "
            f"and create_date > '{sub.created:%Y-%m-%dT%H:%M:%S%z}' and file_name like '%.root'"
        )
    backend.locate("sim_gen_3_late.root")  # the dataset is a query: once located, the output is in it
    assert backend.contents(downstream.dataset) == sorted([out(sim, g) for g in GEN] + ["sim_gen_3_late.root"])
    sub.refresh_from_db()
    entry = sub.params["workflow"]["dependencies"][0]
    assert (entry["name"], entry["stage"]) == (downstream.dataset, "reco")


def test_the_dependency_dataset_only_grows(backend, flow):
    sub = process(backend, launch(flow.sim, "gen_out"), consume=GEN)
    name, handler = f"poms_depends_{sub.pk}_1", handler_of(sub)
    outputs = [out(flow.sim, g) for g in GEN]

    backend.define(name, q.Limit(q.Match(version="v2"), 1))  # smaller: replaced
    assert dependency_dataset(sub, 1, "%.root", handler)[0] == name
    assert backend.contents(name) == outputs

    everything = sorted(GEN + outputs)
    backend.define(name, q.Match(name_like="%.root"))  # larger: kept
    dependency_dataset(sub, 1, "%.root", handler)
    assert backend.contents(name) == everything


def test_analysis_users_get_datasets_named_after_them(backend, world):
    ana = world.analysis_stage
    ana.software_version = "v2"
    ana.save()
    after = StageFactory(experiment=world.experiment, campaign=ana.campaign, creator=ana.creator,
                         creator_role=Role.ANALYSIS, name="ana2", job_type=ana.job_type,
                         login_setup=ana.login_setup)  # fmt: skip
    StageDependency.objects.create(upstream=ana, downstream=after, file_pattern="%.root")
    for name in GEN:
        backend.declare(name, dataset="mine", created=OLD)
    backend.adopt()
    sub = process(backend, launch(ana, "mine"), consume=GEN)
    assert workflow.wrapup() == [sub.pk]
    downstream = Submission.objects.get(stage=after)
    assert downstream.dataset == f"poms_analysis_depends_{sub.pk}_1"
    assert downstream.creator_role == Role.ANALYSIS and downstream.launcher.username == "analysis"
    assert backend.contents(downstream.dataset) == [out(ana, g) for g in GEN]


def test_generator_stages_pass_on_the_dataset_their_jobs_declared(backend, flow):
    sim = flow.sim
    sim.stage_type, sim.completion_pct = "generator", 100
    sim.save()
    sub = launch(sim, "none")
    Submission.objects.filter(pk=sub.pk).update(jobs_completed=2)
    assert ledger.set_status(sub.pk, Status.COMPLETED, cause="test: its jobs finished")
    name = f"poms_depends_{sub.pk}_1"
    assert workflow.wrapup() == []  # no dataset declared yet
    backend.declare("made_0.root", version="v2", dataset=name)
    assert workflow.wrapup() == []  # 1 of 2 jobs' files
    backend.declare("made_1.root", version="v2", dataset=name)
    assert workflow.wrapup() == [sub.pk]
    sub.refresh_from_db()
    assert sub.files_generated == 2 and cause(sub) == "outputs located: 2 ≥ 2 (100 %)"
    downstream = Submission.objects.get(stage=flow.reco)
    assert downstream.dataset == name
    assert backend.contents(name) == ["made_0.root", "made_1.root"]


SELF_SPLITS = {
    # split type, stage dataset, the datasets of the first two launches, the files of each
    "nfiles": ("nfiles(2)", "gen_out", ["gen_out_slice0_files2", "gen_out_slice1_files2"], [GEN[:2], GEN[2:]]),
    "list": ("list", "half_a,half_b", ["half_a", "half_b"], [GEN[:2], GEN[2:]]),
}


@pytest.mark.parametrize("split", list(SELF_SPLITS))
def test_a_self_dependency_relaunches_the_stage_on_its_next_split(backend, flow, split):
    sim, reco = flow.sim, flow.reco
    spec, dataset, names, files = SELF_SPLITS[split]
    backend.define("half_a", q.Limit(q.Dataset("gen_out"), 2))
    backend.define("half_b", q.Limit(q.Dataset("gen_out"), 2, 2))
    sim.split_type, sim.dataset = spec, dataset
    sim.save()
    StageDependency.objects.create(upstream=sim, downstream=sim, file_pattern="%.root")

    first = launch(sim)
    assert first.dataset == names[0] and backend.contents(first.dataset) == files[0]
    process(backend, first, consume=files[0])
    assert workflow.wrapup() == [first.pk]
    second = Submission.objects.filter(stage=sim).exclude(pk=first.pk).get()
    assert second.dataset == names[1] and backend.contents(second.dataset) == files[1]
    assert second.recovery_parent is None
    downstream = Submission.objects.get(stage=reco)
    assert downstream.dataset == f"poms_depends_{first.pk}_1"  # the self-dependency takes no index
    assert backend.contents(downstream.dataset) == [out(sim, g) for g in files[0]]

    process(backend, second, consume=files[1])
    assert workflow.wrapup() == [second.pk]  # the split is exhausted: no third launch
    assert Submission.objects.filter(stage=sim).count() == 2
    later = Submission.objects.filter(stage=reco).exclude(pk=downstream.pk).get()
    assert backend.contents(later.dataset) == [out(sim, g) for g in files[1]]


# --- file accounting ------------------------------------------------------------------------------

ROW = re.compile(r"<tr><th>([^<]+)</th><td>(?:<a href=\"[^\"]*\">)?(\d+)")


def test_file_accounting_is_the_same_on_both_backends(backend, flow, world):
    sim = flow.sim
    sub = process(backend, launch(sim, "gen_out"), consume=GEN[:3], outputs=False)
    for name in GEN[:3]:  # gen_2's output is declared without a location
        backend.declare(out(sim, name), parents=[name], version="v2", located=name != GEN[2])
    backend.declare("sim_gen_0.log", parents=[GEN[0]], version="v2")  # a kid, not an output that matters
    backend.declare("sim_gen_3_v1.root", parents=[GEN[3]], version="v1")  # a kid of another version
    client = world.client("analysis")
    html = client.get(reverse("submissions:files", args=[sub.pk])).content.decode()
    assert dict((label, int(n)) for label, n in ROW.findall(html)) == {
        "Submitted": 4, "Delivered": 4, "Consumed": 3, "Failed": 1, "Skipped": 0, "Unknown": 0,
        "With some kids declared": 3, "With all kids declared": 3, "With kids located": 2, "Pending": 2,
        "Available output": 2,
    }  # fmt: skip
    pending = client.get(reverse("submissions:file_list", args=[sub.pk, "Pending"])).content.decode()
    assert GEN[2] in pending and GEN[3] in pending and GEN[0] not in pending
    available = client.get(reverse("submissions:file_list", args=[sub.pk, "Available output"])).content.decode()
    assert out(sim, GEN[0]) in available and out(sim, GEN[2]) not in available


# --- splits -----------------------------------------------------------------------------------------

E = 1704067200  # 2024-01-01 00:00:00 UTC
HOUR = 3600
RUNS = [1, 1, 2, 2, 2, 5, 5, 7, 7, 7]  # raw_00 … raw_09; runs 3, 4 and 6 hold no file


def R(*indexes):
    return [f"raw_{i:02d}.root" for i in indexes]


SPLITS = {
    # spec: (the files of each launch, in order, until the split is exhausted)
    "mod(3)": [R(0, 3, 6, 9), R(1, 4, 7), R(2, 5, 8)],
    "nfiles(4)": [R(0, 1, 2, 3), R(4, 5, 6, 7), R(8, 9)],
    "drainingn(4)": [R(0, 1, 2, 3), R(4, 5, 6, 7), R(8, 9)],
    "byrun(low=1,high=7)": [R(0, 1), R(2, 3, 4), R(5, 6), R(7, 8, 9)],
    "byexistingruns()": [R(0, 1), R(2, 3, 4), R(5, 6), R(7, 8, 9)],
    "new(window=2h,firsttime=1704067200)": [R(0, 1), R(2, 3), R(4, 5)],
    "stagedfiles(2)": [R(0, 1), R(2, 3), R(4)],
}


# Known disagreement, left for a decision: byexistingruns' later slices are defined as POMS prints them,
# "defname: raw  minus snapshot_id S and run_number R " (test_samweb pins those bytes). The stub reads
# SAM's `and` as binding tighter than `minus`, so on SAM that is raw minus (S and run R) — nearly all of
# raw — while the catalogue evaluates the tree, (raw minus S) and run R.


@pytest.mark.parametrize("spec", list(SPLITS))
def test_splits_give_the_same_slices(backend, spec):
    for i, run in enumerate(RUNS):
        ends = datetime.fromtimestamp(E + i * HOUR + 1800, UTC)
        backend.declare(f"raw_{i:02d}.root", run=run, subrun=i, end_time=ends, created=OLD)
    backend.declare("sim_00.root", run=3, end_time=datetime.fromtimestamp(E + 1800, UTC), created=OLD)  # not in raw
    backend.define("raw", q.Match(name_like="raw_%"))
    dataset = "raw"
    if spec.startswith("stagedfiles"):
        backend.project("prestage", "raw", dict.fromkeys(R(0, 1, 2, 3, 4), "consumed"), default="failed")
        dataset = "prestage"
    stage = SimpleNamespace(dataset=dataset, split_type=spec, test_split_type="", split_cursor=None)
    now = E + 6 * HOUR + 1800
    for number, files in enumerate(SPLITS[spec], 1):
        name, stage.split_cursor = next_split(stage, handler=backend.handler, now=now)
        assert backend.contents(name) == files, f"launch {number}: {name}"
    with pytest.raises(SplitsExhausted):
        next_split(stage, handler=backend.handler, now=now)
