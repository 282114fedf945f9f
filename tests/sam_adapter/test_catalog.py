"""The built-in catalogue: every node of the query algebra evaluated in SQL, and projects."""

from datetime import timedelta

import pytest
from django.utils import timezone

from sam_adapter import query as q
from sam_adapter.catalog import CatalogHandler, like_to_regex
from sam_adapter.interface import DataHandlerError
from sam_adapter.models import FileStatus
from tests.factories import ExperimentFactory

pytestmark = pytest.mark.django_db
T0 = timezone.now() - timedelta(days=1)


@pytest.fixture
def cat():
    """raw_00..raw_05 (runs 1,1,2,2,3,3); each raw_i has a sim child, raw_00..02 a reco grandchild."""
    handler = CatalogHandler(ExperimentFactory(name="cat"))
    for i in range(6):
        handler.declare(
            f"raw_{i:02d}.root", version="v1", run_number=1 + i // 2, location="/pnfs/raw",
            created=T0, end_time=T0 + timedelta(hours=i),
        )  # fmt: skip
        handler.declare(f"sim_{i:02d}.root", parents=[f"raw_{i:02d}.root"], version="v2", location="/pnfs/sim")
    for i in range(3):
        handler.declare(f"reco_{i:02d}.root", parents=[f"sim_{i:02d}.root"], version="v2")  # not located
    handler.define("raw", q.Match(name_like="raw_%"))
    return handler


def names(handler, query):
    return handler.list_files(query)


RAW = [f"raw_{i:02d}.root" for i in range(6)]


def test_datasets_matches_and_set_algebra(cat):
    assert names(cat, q.Dataset("raw")) == RAW
    assert cat.count(q.Match(version="v2")) == 9
    assert names(cat, q.And(q.Dataset("raw"), q.Match(run_number=2))) == RAW[2:4]
    assert names(cat, q.Minus(q.Dataset("raw"), q.Match(run_number=1))) == RAW[2:]
    assert names(cat, q.Union((q.Match(run_number=1), q.Match(run_number=3)))) == RAW[:2] + RAW[4:]
    window = q.Match(end_time_after=T0 + timedelta(hours=1), end_time_until=T0 + timedelta(hours=3))
    assert names(cat, q.And(q.Dataset("raw"), window)) == RAW[2:4]


def test_limit_offset_and_stride(cat):
    assert names(cat, q.Limit(q.Dataset("raw"), 2, 2)) == RAW[2:4]
    assert names(cat, q.Stride(q.Dataset("raw"), 3, 1)) == [RAW[1], RAW[4]]
    assert sum(cat.count(q.Stride(q.Dataset("raw"), 4, i)) for i in range(4)) == 6


def test_parentage_at_depth(cat):
    assert names(cat, q.ChildrenOf(q.Limit(q.Dataset("raw"), 1))) == ["sim_00.root"]
    assert names(cat, q.ChildrenOf(q.Limit(q.Dataset("raw"), 1), depth=2)) == ["reco_00.root"]
    located_grandkids = q.ParentsOf(q.Match(version="v2", availability="physical", name_like="reco%"), depth=2)
    assert names(cat, located_grandkids) == []
    assert names(cat, q.ParentsOf(q.Match(name_like="reco%"), depth=2)) == RAW[:3]


def test_snapshots_freeze_and_union(cat):
    first = cat.snapshot(q.Limit(q.Dataset("raw"), 2))
    second = cat.snapshot(q.Limit(q.Minus(q.Dataset("raw"), q.Snapshot(first)), 2))
    assert names(cat, q.Snapshot(second)) == RAW[2:4]
    assert cat.count(q.Union((q.Snapshot(first), q.Snapshot(second)))) == 4


def test_projects_hand_out_each_file_once_and_summarise(cat):
    project = cat.start_project("p1", "raw", submission_id=7)
    assert cat.start_project("p1", "raw").pk == project.pk  # starting again joins it
    given = []
    while (f := cat.next_file(project, "job1")) is not None:
        given.append(f.name)
    assert sorted(given) == RAW
    for name in RAW[:3]:
        cat.set_file_status(project, name, FileStatus.CONSUMED)
    cat.set_file_status(project, RAW[3], FileStatus.FAILED)
    cat.end_process(project, "job1")
    summary = cat.project_summary("p1")
    assert summary.files_in_snapshot == 6 and summary.status == "completed"
    assert summary.counts == {"consumed": 3, "failed": 1, "unknown": 2}
    leftover = cat.process_recovery("p1")
    assert names(cat, leftover) == RAW[3:]
    assert names(cat, q.ProjectFiles("p1", (q.CONSUMED_LIKE,))) == RAW[:3]


def test_explicit_datasets_collect_declared_files(cat):
    cat.declare("gen_1.root", dataset="poms_depends_9_1", submission_id=9)
    cat.declare("gen_2.root", dataset="poms_depends_9_1", submission_id=9)
    assert names(cat, q.Dataset("poms_depends_9_1")) == ["gen_1.root", "gen_2.root"]


def test_bad_requests_are_clear_errors(cat):
    with pytest.raises(DataHandlerError, match="no dataset named 'nope'"):
        cat.count(q.Dataset("nope"))
    with pytest.raises(DataHandlerError, match="already declared"):
        cat.declare("raw_00.root")
    with pytest.raises(DataHandlerError, match="unknown parent"):
        cat.declare("x.root", parents=["ghost.root"])
    assert not cat.definition_exists("x.root") and cat.count(q.Match(name_like="x.root")) == 0
    with pytest.raises(DataHandlerError, match="raw samweb fragment"):
        cat.count(q.Raw("samweb", "file_name like '%.root'"))
    cat.define("loop", q.Dataset("loop"))
    with pytest.raises(DataHandlerError, match="refers to itself"):
        cat.count(q.Dataset("loop"))


def test_queries_round_trip_through_json():
    tree = q.Limit(q.Minus(q.Dataset("d"), q.Union((q.Snapshot(1), q.Snapshot(2)))), 5)
    tree2 = q.And(q.ChildrenOf(q.ProjectSnapshot("p"), 2), q.Match(version="v", created_after=T0))
    assert q.from_json(q.to_json(tree)) == tree and q.from_json(q.to_json(tree2)) == tree2


def test_like_patterns():
    assert like_to_regex("%.root") == r"^.*\.root$" and like_to_regex("a_b") == "^a.b$"
