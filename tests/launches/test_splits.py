"""Split types on the real catalogue: one table per type, then launches, dry runs and cursor changes."""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import NoReverseMatch, include, path, reverse
from django.utils import timezone

from launches import services, split_views
from launches.splits import SPLIT_TYPES, SplitError, SplitsExhausted, describe, next_split, parse
from launches.splits import cursor as split_cursor
from launches.tasks import launch_submission
from poms.permissions import actor_for
from sam_adapter import query as q
from sam_adapter.catalog import CatalogHandler
from sam_adapter.interface import DataHandlerError
from sam_adapter.models import CatalogFile, NamedDataset, Snapshot
from submissions.models import Submission
from tests.concurrency import run_at_once
from tests.conftest import World
from tests.factories import ExperimentFactory

E = 1704067200  # 2024-01-01 00:00:00 UTC
HOUR = 3600
RUNS = [1, 1, 2, 2, 2, 5, 5, 7, 7, 7]  # raw_00 … raw_09; runs 3, 4 and 6 hold no raw file
RAW = q.Dataset("raw")
ANY = object()


class AnySnapshot:
    """A slice defined as a snapshot (its files are checked apart): the id is not known ahead."""

    def __eq__(self, other):
        return isinstance(other, q.Snapshot)

    def __repr__(self):
        return "Snapshot(<any>)"


SNAPSHOT = AnySnapshot()
pytestmark = pytest.mark.django_db


def R(*indexes):
    return [f"raw_{i:02d}.root" for i in indexes]


def at(unix):
    return datetime.fromtimestamp(unix, tz=UTC)


class Catalog(CatalogHandler):
    """The built-in catalogue, remembering the trees splits define, plus the file-metadata call
    byexistingruns needs (SAM get-metadata's "runs"), which the DataHandler interface lacks so far."""

    def __init__(self, experiment):
        super().__init__(experiment)
        self.defined = {}

    def define(self, name, query):
        self.defined[name] = query
        super().define(name, query)

    def file_metadata(self, name):
        f = CatalogFile.objects.get(experiment=self.experiment, name=name)
        return {"runs": [[f.run_number, f.subrun or 0, "physics"]]} if f.run_number is not None else {}


@pytest.fixture
def cat(db):
    """raw_00…raw_09: runs as RUNS, end_time 00:30, 01:30, … on 2024-01-01; a sim file in run 3
    that is not in `raw`; `empty` selects nothing."""
    handler = Catalog(ExperimentFactory(name="nova"))
    for i, run in enumerate(RUNS):
        handler.declare(f"raw_{i:02d}.root", run_number=run, subrun=i, end_time=at(E + i * HOUR + 1800))
    handler.declare("sim_00.root", run_number=3, end_time=at(E + 1800))
    handler.define("raw", q.Match(name_like="raw_%"))
    handler.define("empty", q.Match(name_like="nothing%"))
    return handler


def prestage_project(handler):
    """A prestaging project over raw that consumed raw_00…raw_04 and failed raw_05."""
    project = handler.start_project("prestage", "raw")
    for name in R(0, 1, 2, 3, 4):
        handler.set_file_status(project, name, "consumed")
    handler.set_file_status(project, "raw_05.root", "failed")


# --- the tables ----------------------------------------------------------------------------


@dataclass
class Launch:
    """One expected launch: the dataset name (str, or a compiled regex), the files it holds,
    the tree it was defined as (or a function of the cursor before it), the cursor after it
    (ANY: unchecked), or `holds`: the files the cursor snapshot must hold."""

    name: object
    files: list | None = None
    tree: object = None
    cursor: object = ANY
    holds: list | None = None


@dataclass
class Case:
    label: str
    spec: str
    dataset: str = "raw"
    launches: list = field(default_factory=list)
    ends: str | None = None  # regex the exhaustion message matches after the launches
    cursor: int | None = None  # the stage's cursor before the first launch
    now: float = E + 10 * 24 * HOUR
    setup: object = None
    zone: str = "UTC"


UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def named(pattern):
    return re.compile(pattern.replace("<uuid>", UUID))


def window(start, end):
    return lambda _: q.And(RAW, q.Match(end_time_after=at(start), end_time_until=at(end)))


TABLES = {}


def table(name, *cases):
    TABLES[name] = list(cases)


table(
    "None",
    Case("None", "None", launches=[Launch("raw", cursor=None), Launch("raw", cursor=None)]),
    Case("lower case", "none", launches=[Launch("raw")]),
    Case("empty", "", launches=[Launch("raw")]),
    Case("whitespace", "  none\t", launches=[Launch("raw")]),
    Case("keeps a cursor it was given", "None", cursor=5, launches=[Launch("raw", cursor=5)]),
)
table(
    "draining",
    Case("same dataset every time", "draining", dataset="self_draining", launches=[Launch("self_draining")] * 3),
    Case("whitespace", " draining ", cursor=2, launches=[Launch("raw", cursor=2)]),
)
table(
    "list",
    Case(
        "walks the items then ends",
        "list",
        dataset="a, b ,c",
        launches=[Launch("a", cursor=1), Launch("b", cursor=2), Launch("c", cursor=3)],
        ends=r"all 3 datasets of the list were launched",
    ),
    Case("from a cursor", " list ", dataset="a,b,c", cursor=2, launches=[Launch("c", cursor=3)], ends="all 3"),
)
table(
    "multiparam",
    Case(
        "first list varies fastest",
        "multiparam",
        dataset='[["electron","muon"],["1GeV","3GeV"]]',
        launches=[Launch(n) for n in ("electron_1GeV", "muon_1GeV", "electron_3GeV", "muon_3GeV")],
        ends=r"all 4 combinations",
    ),
    Case(
        "three lists, numbers",
        " multiparam",
        dataset='[["a","b"], [1], ["x","y"]]',
        launches=[Launch("a_1_x"), Launch("b_1_x"), Launch("a_1_y"), Launch("b_1_y", cursor=4)],
        ends=r"all 4 combinations",
    ),
)
table(
    "mod",
    Case(
        "three interleaved slices",
        "mod(3)",
        launches=[
            Launch("raw_slice0_of_3", R(0, 3, 6, 9), q.Stride(RAW, 3, 0), cursor=1),
            Launch("raw_slice1_of_3", R(1, 4, 7), q.Stride(RAW, 3, 1), cursor=2),
            Launch("raw_slice2_of_3", R(2, 5, 8), q.Stride(RAW, 3, 2), cursor=3),
        ],
        ends=r"all 3 slices of mod\(3\) were launched",
    ),
    Case("whitespace", "mod( 3 )", cursor=2, launches=[Launch("raw_slice2_of_3", R(2, 5, 8))], ends="all 3"),
    Case("legacy mod_n", "mod_3", launches=[Launch("raw_slice0_of_3", R(0, 3, 6, 9))]),
)
table(
    "nfiles",
    Case(
        "chunks of four",
        "nfiles(4)",
        launches=[
            Launch("raw_slice0_files4", R(0, 1, 2, 3), q.Limit(RAW, 4, 0), cursor=1),
            Launch("raw_slice1_files4", R(4, 5, 6, 7), q.Limit(RAW, 4, 4), cursor=2),
            Launch("raw_slice2_files4", R(8, 9), q.Limit(RAW, 4, 8), cursor=3),
        ],
        ends=r"raw has no files past the first 12, so chunk 3 of nfiles\(4\) is empty",
    ),
    Case("whitespace", " nfiles ( 5 ) ", launches=[Launch("raw_slice0_files5", R(0, 1, 2, 3, 4))]),
    Case("empty dataset", "nfiles(2)", dataset="empty", ends=r"empty has no files past the first 0"),
)
table(
    "limitn",
    Case(
        "the same sample every launch",
        "limitn(3)",
        launches=[Launch(named(r"raw_<uuid>_limit3"), R(0, 1, 2), q.Limit(RAW, 3), cursor=None)] * 2,
    ),
    Case("whitespace", "limitn (20)", launches=[Launch(named(r"raw_<uuid>_limit20"), R(*range(10)))]),
    Case("empty dataset", "limitn(3)", dataset="empty", ends=r"^No more splits in this stage: empty has no files\.$"),
)
table(
    "drainingn",
    Case(
        "drains four at a time, remembering what it delivered",
        "drainingn(4)",
        launches=[
            Launch("raw_slice_0_stage_4", R(0, 1, 2, 3), SNAPSHOT, holds=R(0, 1, 2, 3)),
            Launch(named(r"raw_slice_\d+_stage_4"), R(4, 5, 6, 7), SNAPSHOT, holds=R(*range(8))),
            Launch(named(r"raw_slice_\d+_stage_4"), R(8, 9), holds=R(*range(10))),
        ],
        ends=r"every file of raw was already delivered by drainingn\(4\)",
    ),
    Case("whitespace", "drainingn( 20 )", launches=[Launch("raw_slice_0_stage_20", R(*range(10)))], ends="every"),
)
table(
    "stagedfiles",
    Case(
        "the project's consumed files, two at a time",
        "stagedfiles(2)",
        dataset="prestage",
        setup=prestage_project,
        launches=[
            Launch("prestage_slice_0_stage_2", R(0, 1), SNAPSHOT, holds=R(0, 1)),
            Launch(named(r"prestage_slice_\d+_stage_2"), R(2, 3), SNAPSHOT, holds=R(0, 1, 2, 3)),
            Launch(named(r"prestage_slice_\d+_stage_2"), R(4), holds=R(0, 1, 2, 3, 4)),
        ],
        ends=r"project prestage has no consumed files that were not delivered already",
    ),
    Case(
        "whitespace",
        " stagedfiles ( 9 )",
        dataset="prestage",
        setup=prestage_project,
        launches=[Launch("prestage_slice_0_stage_9", R(0, 1, 2, 3, 4))],
        ends="project prestage",
    ),
)
table(
    "byrun",
    Case(
        "one run per launch, skipping empty runs",
        "byrun(low=1,high=7)",
        launches=[
            Launch(named(r"raw_<uuid>_run_1"), R(0, 1), q.And(RAW, q.Match(run_number=1)), cursor=2),
            Launch(named(r"raw_<uuid>_run_2"), R(2, 3, 4), q.And(RAW, q.Match(run_number=2)), cursor=3),
            Launch(named(r"raw_<uuid>_run_5"), R(5, 6), q.And(RAW, q.Match(run_number=5)), cursor=6),
            Launch(named(r"raw_<uuid>_run_7"), R(7, 8, 9), cursor=8),
        ],
        ends=r"every run up to 7 was launched",
    ),
    Case("nothing in range", "byrun(low=3,high=4)", ends=r"raw has no files in runs 3–4\.$"),
    Case(
        "empty runs up to high",
        "byrun( low = 5 , high = 6 )",
        launches=[Launch(named(r"raw_<uuid>_run_5"), R(5, 6), cursor=6)],
        ends=r"raw has no files in runs 6–6",
    ),
    Case("high is inclusive", "byrun(high=1)", launches=[Launch(named("raw_<uuid>_run_1"), R(0, 1))], ends="up to 1"),
    Case("from a cursor", "byrun(low=1,high=9)", cursor=6, launches=[Launch(named("raw_<uuid>_run_7"), cursor=8)]),
    Case(
        "looks a bounded way ahead",
        "byrun(low=8)",
        ends=r"no files in runs 8–2007 \(byrun looks at most 2000 runs ahead\)",
    ),
)
table(
    "byexistingruns",
    Case(
        "the run of the first undelivered file, all of it",
        "byexistingruns()",
        launches=[
            Launch("raw_slice_0_run_1", R(0, 1), SNAPSHOT, holds=R(0, 1)),
            Launch(named(r"raw_slice_\d+_run_2"), R(2, 3, 4), SNAPSHOT, holds=R(*range(5))),
            Launch(named(r"raw_slice_\d+_run_5"), R(5, 6)),
            Launch(named(r"raw_slice_\d+_run_7"), R(7, 8, 9), holds=R(*range(10))),
        ],
        ends=r"every file of raw was already delivered by byexistingruns\(\)",
    ),
    Case("whitespace, no parentheses", " byexistingruns ", launches=[Launch("raw_slice_0_run_1", R(0, 1))]),
)
table(
    "new",
    Case(
        "two-hour windows from firsttime up to now − fts",
        "new(window=2h,firsttime=1704067200)",
        now=E + 6 * HOUR + 1800,
        launches=[
            Launch(named(rf"raw_<uuid>_time_{E}__{E + 2 * HOUR}"), R(0, 1), window(E, E + 2 * HOUR), cursor=E + 7200),
            Launch(named(rf"raw_<uuid>_time_{E + 2 * HOUR}__{E + 4 * HOUR}"), R(2, 3), cursor=E + 4 * HOUR),
            Launch(named(rf"raw_<uuid>_time_{E + 4 * HOUR}__{E + 6 * HOUR}"), R(4, 5), cursor=E + 6 * HOUR),
        ],
        ends=r"the next window of new would end at 2024-01-01 08:00:00 UTC, later than now − fts; launch again later",
    ),
    Case(
        "without firsttime: the latest full window",
        "new(window=1h)",
        now=E + 5 * HOUR + 2700,
        launches=[Launch(named(rf"raw_<uuid>_time_{E + 4 * HOUR + 900}__{E + 5 * HOUR + 900}"), R(4))],
        ends="would end at 2024-01-01 06:15:00 UTC",
    ),
    Case(
        "rounded to the hour",
        "new(window=1h,round=1h)",
        now=E + 5 * HOUR + 2700,
        launches=[Launch(named(rf"raw_<uuid>_time_{E + 4 * HOUR}__{E + 5 * HOUR}"), R(4), cursor=E + 5 * HOUR)],
    ),
    Case(
        "end inclusive, start exclusive; suffixes m and s; whitespace",
        " new ( window = 90m , fts = 0s , firsttime = 1704067200 ) ",
        now=E + 3 * HOUR,
        launches=[
            Launch(named(rf"raw_<uuid>_time_{E}__{E + 5400}"), R(0, 1), window(E, E + 5400)),
            Launch(named(rf"raw_<uuid>_time_{E + 5400}__{E + 10800}"), R(2)),
        ],
        ends="would end at 2024-01-01 04:30:00 UTC",
    ),
    Case(
        "lasttime bounds the walk; day windows",
        "new(window=1d,fts=0,firsttime=1704067200,lasttime=1704153600)",
        launches=[Launch(named(rf"raw_<uuid>_time_{E}__{E + 86400}"), R(*range(10)), cursor=E + 86400)],
        ends="later than lasttime − fts",
    ),
    Case(
        "localtime=1 reads the window in the server's zone",
        "new(window=2h,localtime=1,firsttime=1704088800)",
        zone="America/Chicago",
        launches=[Launch(named(rf"raw_<uuid>_time_{E + 6 * HOUR}__{E + 8 * HOUR}"), R(0, 1), window(E, E + 7200))],
    ),
    Case(
        "from a cursor, one week by default",
        "new",
        cursor=E - 86400,
        launches=[Launch(named(rf"raw_<uuid>_time_{E - 86400}__{E + 6 * 86400}"), R(*range(10)), cursor=E + 6 * 86400)],
        ends="would end at 2024-01-14",
    ),
)
table(
    "new_local",
    Case(
        "local wall-clock windows",
        "new_local(window=2h,firsttime=1704088800)",
        zone="America/Chicago",
        launches=[
            Launch(named(rf"raw_<uuid>_time_{E + 6 * HOUR}__{E + 8 * HOUR}"), R(0, 1), window(E, E + 7200)),
            Launch(named(rf"raw_<uuid>_time_{E + 8 * HOUR}__{E + 10 * HOUR}"), R(2, 3), cursor=E + 10 * HOUR),
        ],
    ),
    Case(
        "whitespace, in UTC",
        " new_local ( window = 1d , firsttime = 1704067200 )",
        launches=[Launch(ANY, R(*range(10)))],
    ),
)

CASES = [pytest.param(kind, case, id=f"{kind}: {case.label}") for kind, cases in TABLES.items() for case in cases]


def test_every_registered_split_type_has_a_table():
    assert set(TABLES) == set(SPLIT_TYPES), "each split type needs a table of cases in this file"
    assert all(TABLES.values())


def walk(cat, case):
    stage = SimpleNamespace(dataset=case.dataset, split_type=case.spec, test_split_type="", split_cursor=case.cursor)
    for number, want in enumerate(case.launches, 1):
        before = stage.split_cursor
        name, cursor = next_split(stage, handler=cat, now=case.now)
        where = f"launch {number}"
        if isinstance(want.name, re.Pattern):
            assert want.name.fullmatch(name), f"{where}: {name}"
        elif want.name is not ANY:
            assert name == want.name, where
        if want.files is not None:
            assert cat.list_files(q.Dataset(name)) == want.files, where
        if want.tree is not None:
            assert cat.defined[name] == (want.tree(before) if callable(want.tree) else want.tree), where
        if want.cursor is not ANY:
            assert cursor == want.cursor, where
        if want.holds is not None:
            assert cat.list_files(q.Snapshot(cursor)) == want.holds, where
        stage.split_cursor = cursor
    if case.ends:
        with pytest.raises(SplitsExhausted, match=case.ends) as caught:
            next_split(stage, handler=cat, now=case.now)
        assert str(caught.value).startswith("No more splits in this stage: ")


@pytest.mark.parametrize(("kind", "case"), CASES)
def test_split_table(cat, kind, case):
    assert parse(case.spec)[0].name == kind
    if case.setup:
        case.setup(cat)
    with timezone.override(case.zone):
        walk(cat, case)


MALFORMED = [
    ("mod", "raw", r"mod needs one whole number n ≥ 1, as mod\(n\); got nothing"),
    ("mod()", "raw", r"got \(\)"),
    ("mod(0)", "raw", r"got \(0\)"),
    ("nfiles(x)", "raw", r"nfiles needs one whole number"),
    ("drainingn(2,3)", "raw", r"got \(2,3\)"),
    ("limitn(-1)", "raw", r"limitn needs one whole number"),
    ("mod(4", "raw", r"cannot read the split type 'mod\(4'"),
    ("frobnicate(3)", "raw", r"unknown split type 'frobnicate'; known: None, draining, list"),
    ("draining_5", "raw", r"write it as draining"),
    ("list(3)", "a,b", r"list takes no parameters"),
    ("byrun(low=5,high=2)", "raw", r"low \(5\) is above high \(2\)"),
    ("byrun(lo=1)", "raw", r"byrun has no parameter 'lo'; it takes low, high"),
    ("byrun(low=a)", "raw", r"low must be a run number"),
    ("byrun(low=1,low=2)", "raw", r"low is given twice"),
    ("new(window)", "raw", r"expected name=value, got 'window'"),
    ("new(window=5x)", "raw", r"window must be a number with an optional w/d/h/m/s suffix"),
    ("new(round=2h,window=1h)", "raw", r"the window must be at least one rounding"),
    ("new(round=0)", "raw", r"round must be at least 1 second"),
    ("multiparam", "not json", r"multiparam: the dataset field is not JSON"),
    ("multiparam", "[[]]", r"a JSON list of non-empty lists"),
    ("mod(2)", "  ", r"split type mod needs the stage's dataset, and it is empty"),
]


@pytest.mark.parametrize(("spec", "dataset", "message"), MALFORMED, ids=[m[0] + " " + m[1] for m in MALFORMED])
def test_a_malformed_spec_names_the_problem(cat, spec, dataset, message):
    stage = SimpleNamespace(dataset=dataset, split_type=spec, test_split_type="", split_cursor=None)
    with pytest.raises(SplitError, match=message):
        next_split(stage, handler=cat)


def test_the_registry_documents_every_type():
    shown = {d["name"]: d for d in describe()}
    assert list(shown) == list(SPLIT_TYPES)
    assert all(d["doc"] and d["syntax"] for d in shown.values())
    assert shown["byrun"]["parameters"] == ["low", "high"] and shown["mod"]["parameters"] == ["n"]
    assert not shown["limitn"]["has_cursor"] and not shown["list"]["uses_data"]


def test_byrun_gallops_over_a_long_gap_in_few_queries(cat, django_assert_max_num_queries):
    cat.declare("raw_late.root", run_number=1900)
    stage = SimpleNamespace(dataset="raw", split_type="byrun(low=8,high=5000)", test_split_type="", split_cursor=None)
    with django_assert_max_num_queries(120):
        name, cursor = next_split(stage, handler=cat)
    assert name.endswith("_run_1900") and cursor == 1901
    assert cat.list_files(q.Dataset(name)) == ["raw_late.root"]


def test_a_snapshot_slice_is_what_the_cursor_records_even_if_the_source_grows_before_the_job_starts(cat):
    for name in ("f10.root", "f11.root", "f12.root"):
        cat.declare(name, dataset="grows", location="/pnfs")
    stage = SimpleNamespace(dataset="grows", split_type="drainingn(2)", test_split_type="", split_cursor=None)
    name, cursor = next_split(stage, handler=cat)
    cat.declare("f00.root", dataset="grows", location="/pnfs")  # sorts first: a live query would take it
    project = cat.start_project("the_job", name)
    assert sorted(project.snapshot.files.values_list("name", flat=True)) == cat.list_files(q.Snapshot(cursor))
    stage.split_cursor = cursor
    name, _ = next_split(stage, handler=cat)
    assert cat.list_files(q.Dataset(name)) == ["f00.root", "f12.root"]


def test_drainingn_picks_up_files_added_after_it_ran_dry(cat):
    stage = SimpleNamespace(dataset="raw", split_type="drainingn(8)", test_split_type="", split_cursor=None)
    for _ in range(2):
        _, stage.split_cursor = next_split(stage, handler=cat, now=E)
    with pytest.raises(SplitsExhausted):
        next_split(stage, handler=cat, now=E)
    cat.declare("raw_10.root", run_number=8)
    name, cursor = next_split(stage, handler=cat, now=E)
    assert cat.list_files(q.Dataset(name)) == ["raw_10.root"]
    full = f"raw_full_{stage.split_cursor}_stage_8_{E}"
    assert isinstance(cat.defined[full], q.Union) and cat.list_files(q.Snapshot(cursor)) == R(*range(11))


def test_a_dry_step_defines_and_snapshots_nothing(cat):
    stage = SimpleNamespace(dataset="raw", split_type="drainingn(3)", test_split_type="", split_cursor=None)
    before = (NamedDataset.objects.count(), Snapshot.objects.count())
    assert next_split(stage, handler=cat, dry=True) == ("raw_slice_0_stage_3", None)
    assert (NamedDataset.objects.count(), Snapshot.objects.count()) == before and set(cat.defined) == {"raw", "empty"}


def test_a_backend_that_cannot_read_metadata_says_so(cat):
    class NoMetadata(CatalogHandler):
        file_metadata = None

    stage = SimpleNamespace(dataset="raw", split_type="byexistingruns()", test_split_type="", split_cursor=None)
    with pytest.raises(DataHandlerError, match="cannot read file metadata"):
        next_split(stage, handler=NoMetadata(cat.experiment))


def test_a_file_without_a_run_stops_byexistingruns_with_its_name(cat):
    cat.declare("norun.root")
    cat.define("norun", q.Match(name_like="norun%"))
    stage = SimpleNamespace(dataset="norun", split_type="byexistingruns", test_split_type="", split_cursor=None)
    with pytest.raises(SplitError, match="file norun.root has no run number"):
        next_split(stage, handler=cat)


def test_splits_without_data_never_make_a_handler():
    def broken():
        raise AssertionError("the handler was made")

    for spec, dataset in (("None", "x"), ("draining", "x"), ("list", "a,b"), ("multiparam", '[["a"]]')):
        stage = SimpleNamespace(dataset=dataset, split_type=spec, test_split_type="", split_cursor=None)
        next_split(stage, handler=broken)


# --- through launch_stage ---------------------------------------------------------------------


def actor(world, who="production"):
    return actor_for(world.users[who], world.experiment)


@pytest.fixture
def split_stage(world, cat, settings):
    settings.POMS_DATA_HANDLER = "catalog"
    stage = world.production_stage
    stage.dataset = "raw"
    stage.save()
    return stage


def configure(stage, split_type, test_split_type="", cursor=None):
    stage.split_type, stage.test_split_type, stage.split_cursor = split_type, test_split_type, cursor
    stage.save()


def test_launches_walk_a_draining_split_and_record_the_cursor_they_started_from(world, split_stage):
    configure(split_stage, "drainingn( 6 )")
    first = services.launch_stage(split_stage, actor=actor(world))
    split_stage.refresh_from_db()
    after_first = split_stage.split_cursor
    second = services.launch_stage(split_stage, actor=actor(world))
    assert first.dataset == "raw_slice_0_stage_6" and second.dataset == f"raw_slice_{after_first}_stage_6"
    assert first.params["split_cursor"] is None and second.params["split_cursor"] == after_first
    handler = CatalogHandler(world.experiment)
    assert handler.list_files(q.Dataset(second.dataset)) == R(6, 7, 8, 9)
    split_stage.refresh_from_db()
    cursor, definitions = split_stage.split_cursor, NamedDataset.objects.count()
    with pytest.raises(services.LaunchError, match=r"^No more splits in this stage: every file of raw"):
        services.launch_stage(split_stage, actor=actor(world))
    split_stage.refresh_from_db()
    assert split_stage.split_cursor == cursor and NamedDataset.objects.count() == definitions
    assert Submission.objects.filter(stage=split_stage).count() == 2


def test_a_test_launch_uses_the_test_split_type_on_the_same_cursor(world, split_stage):
    configure(split_stage, "mod(2)", test_split_type="nfiles(3)")
    test = services.launch_stage(split_stage, actor=actor(world), test=True)
    regular = services.launch_stage(split_stage, actor=actor(world))
    assert test.dataset == "raw_slice0_files3" and test.test
    assert regular.dataset == "raw_slice1_of_2" and regular.params["split_cursor"] == 1
    split_stage.refresh_from_db()
    assert split_stage.split_cursor == 2


def test_an_explicit_dataset_bypasses_the_split(world, split_stage):
    configure(split_stage, "nfiles(3)", cursor=1)
    sub = services.launch_stage(split_stage, actor=actor(world), dataset="chosen")
    split_stage.refresh_from_db()
    assert sub.dataset == "chosen" and "split_cursor" not in sub.params and split_stage.split_cursor == 1


def test_a_dry_run_moves_no_cursor_and_creates_no_dataset(world, split_stage):
    configure(split_stage, "drainingn(4)", cursor=None)
    counts = (NamedDataset.objects.count(), Snapshot.objects.count())
    plan = services.dry_run(split_stage, actor=actor(world))
    assert plan.dataset == "raw_slice_0_stage_4"
    split_stage.refresh_from_db()
    assert split_stage.split_cursor is None and not Submission.objects.exists()
    assert (NamedDataset.objects.count(), Snapshot.objects.count()) == counts
    configure(split_stage, "nfiles(5)", cursor=2)
    with pytest.raises(services.LaunchError, match="No more splits in this stage"):
        services.dry_run(split_stage, actor=actor(world))


def test_data_handling_failures_become_launch_errors(world, split_stage):
    configure(split_stage, "nfiles(2)")
    split_stage.dataset = "nosuch"
    split_stage.save()
    with pytest.raises(services.LaunchError, match="could not give the next split: no dataset named 'nosuch'"):
        services.launch_stage(split_stage, actor=actor(world))
    configure(split_stage, "mod(x)")
    with pytest.raises(services.LaunchError, match=r"mod needs one whole number"):
        services.launch_stage(split_stage, actor=actor(world))
    assert not Submission.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_launches_at_once_never_take_the_same_split(monkeypatch, settings):
    settings.POMS_DATA_HANDLER = "catalog"
    monkeypatch.setattr(launch_submission, "delay", lambda sid: None)
    world = World()
    handler = CatalogHandler(world.experiment)
    for i in range(4):
        handler.declare(f"raw_{i:02d}.root")
    handler.define("raw", q.Match(name_like="raw_%"))
    stage = world.production_stage
    configure(stage, "nfiles(2)")
    stage.dataset = "raw"
    stage.save()
    got = run_at_once(lambda: services.launch_stage(stage, actor=actor(world)).dataset)
    assert sorted(got) == ["raw_slice0_files2", "raw_slice1_files2"]


# --- cursor services and views ------------------------------------------------------------------


def test_reset_set_and_restore_the_cursor(world, split_stage):
    configure(split_stage, "mod(3)")
    subs = [services.launch_stage(split_stage, actor=actor(world)) for _ in range(3)]
    split_cursor.set_cursor(split_stage, 7, actor=actor(world))
    split_stage.refresh_from_db()
    assert split_stage.split_cursor == 7
    assert [c.submission.pk for c in split_cursor.restore_choices(split_stage)] == [s.pk for s in reversed(subs)]
    assert split_cursor.restore_cursor(split_stage, subs[1], actor=actor(world)) == 1
    assert services.launch_stage(split_stage, actor=actor(world)).dataset == "raw_slice1_of_3"
    split_cursor.reset_cursor(split_stage, actor=actor(world))
    split_stage.refresh_from_db()
    assert split_stage.split_cursor is None
    with pytest.raises(split_cursor.CursorError, match="whole number"):
        split_cursor.set_cursor(split_stage, -1, actor=actor(world))


def test_restore_needs_a_split_launch_of_the_same_split_type(world, split_stage):
    configure(split_stage, "mod(3)")
    by_split = services.launch_stage(split_stage, actor=actor(world))
    explicit = services.launch_stage(split_stage, actor=actor(world), dataset="chosen")
    with pytest.raises(split_cursor.CursorError, match="given its dataset explicitly"):
        split_cursor.restore_cursor(split_stage, explicit, actor=actor(world))
    configure(split_stage, "nfiles(3)", cursor=4)
    with pytest.raises(split_cursor.CursorError, match=r"launched with split type mod\(3\), not nfiles\(3\)"):
        split_cursor.restore_cursor(split_stage, by_split, actor=actor(world))
    assert split_cursor.restore_choices(split_stage) == []
    configure(split_stage, " mod( 3 ) ", cursor=4)  # the same split written differently
    assert split_cursor.restore_cursor(split_stage, by_split, actor=actor(world)) is None
    other = world.analysis_stage
    with pytest.raises(split_cursor.CursorError, match="is not a launch of"):
        split_cursor.cursor_of(other, by_split)


def test_only_those_who_may_modify_the_stage_change_its_cursor(world, split_stage):
    for who in ("analysis", "production-shifter"):
        with pytest.raises(PermissionDenied):
            split_cursor.reset_cursor(split_stage, actor=actor(world, who))
        with pytest.raises(PermissionDenied):
            split_cursor.set_cursor(split_stage, 3, actor=actor(world, who))
    split_cursor.set_cursor(world.analysis_stage, 3, actor=actor(world, "analysis"))


def _urlconf():
    """The project's URLs with the split views in the launches namespace (until launches/urls.py has them)."""
    from poms import urls as root

    patterns = []
    for pattern in root.urlpatterns:
        if getattr(pattern, "app_name", None) == "launches":
            pattern = path("", include((list(pattern.url_patterns) + split_views.urlpatterns, "launches")))
        patterns.append(pattern)
    return patterns


urlpatterns = _urlconf()
handler403 = "poms.errors.forbidden"


@pytest.fixture
def split_urls(settings):
    try:
        reverse("launches:split_cursor", args=[1])
    except NoReverseMatch:
        settings.ROOT_URLCONF = __name__


def test_the_cursor_views(world, split_stage, split_urls):
    configure(split_stage, "mod(3)")
    sub = services.launch_stage(split_stage, actor=actor(world))
    production = world.client("production")
    box = production.get(reverse("launches:split_cursor", args=[split_stage.pk]))
    assert box.status_code == 200
    page = box.content.decode()
    assert 'id="split-cursor-reset"' in page and f'<option value="{sub.pk}">submission {sub.pk}' in page

    def post(client, action, **data):
        return client.post(reverse(f"launches:split_cursor_{action}", args=[split_stage.pk]), data)

    assert post(production, "set", value="5").status_code == 302
    split_stage.refresh_from_db()
    assert split_stage.split_cursor == 5
    post(production, "set", value="-2")
    split_stage.refresh_from_db()
    assert split_stage.split_cursor == 5
    post(production, "restore", submission=str(sub.pk))
    split_stage.refresh_from_db()
    assert split_stage.split_cursor is None
    post(production, "set", value="2")
    post(production, "reset")
    split_stage.refresh_from_db()
    assert split_stage.split_cursor is None

    analyst = world.client("analysis")
    assert post(analyst, "set", value="9").status_code == 403
    assert post(analyst, "reset").status_code == 403
    assert post(analyst, "restore", submission=str(sub.pk)).status_code == 403
    split_stage.refresh_from_db()
    assert split_stage.split_cursor is None
    shown = analyst.get(reverse("launches:split_cursor", args=[split_stage.pk])).content.decode()
    assert "split-cursor-reset" not in shown and "cursor <b" in shown


def test_the_partial_loads_itself_when_included_with_only_the_stage(world, split_urls):
    from django.template.loader import render_to_string

    html = render_to_string("launches/_split_cursor.html", {"stage": world.production_stage})
    assert f'hx-get="{reverse("launches:split_cursor", args=[world.production_stage.pk])}"' in html


def test_an_unreadable_split_spec_is_shown_in_the_box(world, split_stage, split_urls):
    configure(split_stage, "mod(")
    page = world.client("production").get(reverse("launches:split_cursor", args=[split_stage.pk])).content.decode()
    assert "cannot read the split type" in page


def test_the_stage_page_lists_every_split_type_with_its_documentation(world):
    from django.urls import reverse
    from markupsafe import escape

    from launches.splits import SPLIT_TYPES

    html = world.client("analysis").get(reverse("launches:split_cursor", args=[world.production_stage.pk])).content
    html = html.decode()
    assert "All split types" in html
    for kind in SPLIT_TYPES.values():
        assert str(escape(kind.syntax or kind.name)) in html and str(escape(kind.doc.split(".")[0])) in html
