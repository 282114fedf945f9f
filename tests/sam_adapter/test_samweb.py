"""The samweb backend: dimension strings byte-for-byte as POMS builds them, and the handler
speaking SAM's REST API to a stub SAM web server over real HTTP."""

import socket
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from sam_adapter import query as q
from sam_adapter.interface import DataHandlerError
from sam_adapter.samweb import FailingUrls, SamwebHandler, sam_base_for, to_dims
from tests.fakes.sam_server import sam_server  # noqa: F401 — the fixture

C = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)  # a submission's creation time
CS = "2024-05-01T12:00:00+0000"  # … as POMS prints it (strftime %Y-%m-%dT%H:%M:%S%z)
P = "mwm-fife_wrap_20240501_120000_123"  # a SAM project name
NOT_CONSUMED = ("skipped", "unknown", "delivered", "transferred", "unconsumed", "cancelled")


def parents(depth=1, **match):
    return q.ParentsOf(q.Match(**match), depth)


def raw(text):
    return q.Raw("samweb", text)


# Each row: the tree a caller builds, and the string POMS prints at the named place.
DIMS_TABLE = [
    # split_types/*.py
    ("mod", q.Stride(q.Dataset("raw"), 4, 1), "defname: raw with stride 4 offset 1"),
    ("nfiles", q.Limit(q.Dataset("raw"), 10, 20), "defname: raw with limit 10 offset 20"),
    ("limitn", q.Limit(q.Dataset("raw"), 10), "defname: raw with limit 10"),
    (
        "drainingn",
        q.Limit(q.Minus(q.Dataset("raw"), q.Snapshot(77)), 5),
        "defname: raw  minus snapshot_id 77  with limit 5 ",
    ),
    ("drainingn accumulation", q.Union((q.Snapshot(77), q.Snapshot(78))), "snapshot_id 77 or snapshot_id 78"),
    (
        "stagedfiles first",
        q.Limit(q.ProjectFiles("prestage", ("consumed",)), 5),
        "project_name prestage  and consumed_status 'consumed'   with limit 5 ",
    ),
    (
        "stagedfiles",
        q.Limit(q.Minus(q.ProjectFiles("prestage", ("consumed",)), q.Snapshot(77)), 5),
        "project_name prestage  and consumed_status 'consumed' minus snapshot_id 77  with limit 5 ",
    ),
    ("byrun", q.And(q.Dataset("raw"), q.Match(run_number=12)), "defname: raw and run_number 12"),
    (
        "byexistingruns",
        q.And(q.Minus(q.Dataset("raw"), q.Snapshot(77)), q.Match(run_number="12.0003")),
        "defname: raw  minus snapshot_id 77 and run_number 12.0003 ",
    ),
    (
        "new",
        q.And(q.Dataset("raw"), q.Match(end_time_after=C, end_time_until=C + timedelta(hours=6))),
        "defname: raw and end_time > '2024-05-01T12:00:00' and end_time <= '2024-05-01T18:00:00'",
    ),
    # SAMSpecifics.create_recovery_dataset
    (
        "recovery consumed_status",
        q.Minus(q.ProjectSnapshot(P), q.ProjectFiles(P, ("co%",))),
        f"snapshot_for_project_name {P} minus (project_name {P} and consumed_status co%)",
    ),
    (
        "recovery added_files",
        q.Minus(q.Dataset("raw"), q.ProjectSnapshot(P)),
        f"defname:raw minus snapshot_for_project_name {P}",
    ),
    (
        "recovery delivered_not_consumed",
        q.ProjectFiles(P, NOT_CONSUMED),
        f"project_name {P} and consumed_status skipped,unknown,delivered,transferred,unconsumed,cancelled",
    ),
    (
        "recovery pending_files",
        q.Minus(q.ProjectSnapshot(P), parents(version="v2", name_like="%.root", created_after=C)),
        f"snapshot_for_project_name {P} minus (  isparentof:(  version v2 and file_name like %.root "
        f"and create_date > '{CS}' ) )",
    ),
    (
        "recovery pending_files, two patterns, depth 2",
        q.Minus(
            q.ProjectSnapshot(P),
            q.And(
                parents(2, version="v2", name_like="%.root", created_after=C),
                q.ParentsOf(q.And(q.Match(version="v2", created_after=C), raw("data_tier reconstructed")), 2),
            ),
        ),
        f"snapshot_for_project_name {P} minus (  isparentof:( isparentof:(  version v2 and file_name like %.root "
        f"and create_date > '{CS}' )) and isparentof:( isparentof:(  version v2 and data_tier reconstructed "
        f"and create_date > '{CS}' )) )",
    ),
    # SAMSpecifics.dependency_definition
    (
        "dependents",
        q.And(q.ChildrenOf(q.ProjectSnapshot(P)), q.Match(version="v2", created_after=C, name_like="%.root")),
        f"ischildof:(  snapshot_for_project_name {P} ) and version v2 and create_date > '{CS}' "
        "and file_name like '%.root'",
    ),
    (
        "dependents, depth 2, dims fragment",
        q.And(
            q.ChildrenOf(q.ProjectSnapshot(P), 2),
            q.And(q.Match(version="v2", created_after=C), raw("file_format artroot")),
        ),
        f"ischildof:( ischildof:(  snapshot_for_project_name {P} )) and version v2 and create_date > '{CS}' "
        "and file_format artroot",
    ),
    (
        "dependents of approval",
        q.And(q.Dataset("ds"), q.Match(name_like="%.root")),
        "defname:ds and file_name like '%.root'",
    ),
    ("approval output", q.Dataset("poms_depends_12_1"), "defname:poms_depends_12_1"),
    # sam_project_checker.add_project_submission (wrapup's Located check)
    (
        "wrapup located",
        q.And(
            q.ProjectSnapshot(P), parents(name_like="%.root", version="v2", created_after=C, availability="physical")
        ),
        f"snapshot_for_project_name {P}  and isparentof:(  file_name %.root and version 'v2' "
        f"and create_date > '{CS}'  with availability physical ) ",
    ),
    (
        "wrapup located, two patterns, depth 2",
        q.And(
            q.And(
                q.ProjectSnapshot(P),
                parents(2, name_like="%.root", version="v2", created_after=C, availability="physical"),
            ),
            parents(2, name_like="%.hist", version="v2", created_after=C, availability="physical"),
        ),
        f"snapshot_for_project_name {P}  and isparentof:( isparentof:(  file_name %.root and version 'v2' "
        f"and create_date > '{CS}'  with availability physical ))  and isparentof:( isparentof:(  file_name %.hist "
        f"and version 'v2' and create_date > '{CS}'  with availability physical )) ",
    ),
    # sam_specifics.get_file_stats_for_submissions. SAM counts located files unless told
    # "with availability anylocation", so an unconstrained availability prints anylocation.
    (
        "stats: some kids declared",
        q.And(q.ProjectSnapshot(P), parents(version="v2")),
        f"snapshot_for_project_name {P}  and isparentof:(  version v2 with availability anylocation )",
    ),
    (
        "stats: some kids declared, said explicitly",
        q.And(q.ProjectSnapshot(P), parents(version="v2", availability="anylocation")),
        f"snapshot_for_project_name {P}  and isparentof:(  version v2 with availability anylocation )",
    ),
    (
        "stats: kids located",
        q.And(q.ProjectSnapshot(P), parents(version="v2", availability="physical")),
        f"snapshot_for_project_name {P}  and isparentof:(  version v2 )",
    ),
    (
        "stats: all kids declared",
        q.And(
            q.And(q.ProjectSnapshot(P), parents(name_like="%.root", version="v2", created_after=C)),
            q.ParentsOf(q.And(raw("data_tier hist"), q.Match(version="v2", created_after=C)), 1),
        ),
        f"snapshot_for_project_name {P}  and isparentof:(  file_name like '%.root' and version 'v2' "
        f"and create_date > '{CS}' with availability anylocation )  and isparentof:(  data_tier hist "
        f"and version 'v2' and create_date > '{CS}' with availability anylocation ) ",
    ),
    (
        "stats: available output (printed as the dependency dataset, the same tree)",
        q.And(q.ChildrenOf(q.ProjectSnapshot(P)), q.Match(created_after=C, name_like="%.root", version="v2")),
        f"ischildof:(  snapshot_for_project_name {P} ) and version v2 and create_date > '{CS}' "
        "and file_name like '%.root'",
    ),
    ("stats: submitted (base)", q.ProjectSnapshot(P), f"snapshot_for_project_name {P}"),
    # count_files_in_datasets
    ("datasets together", q.Union((q.Dataset("a"), q.Dataset("b"))), "defname:a or defname:b"),
    # raw fragments
    ("raw samweb", raw("data_tier raw and run_number 5"), "data_tier raw and run_number 5"),
    # everything else: plain and fully parenthesised
    (
        "generic",
        q.Minus(q.Union((q.Dataset("a"), q.Snapshot(3))), q.Match(version="v1", run_number=4)),
        "(defname:a or snapshot_id 3) minus (version 'v1' and run_number 4)",
    ),
    (
        "generic nesting",
        q.Limit(q.ChildrenOf(q.And(q.Dataset("a"), q.Match(availability="physical")), 2), 3, 6),
        "ischildof:( ischildof:( defname:a and (file_name like '%' with availability physical) ) ) "
        "with limit 3 offset 6",
    ),
]


@pytest.mark.parametrize(("query", "dims"), [row[1:] for row in DIMS_TABLE], ids=[row[0] for row in DIMS_TABLE])
def test_it_prints_the_dims_poms_builds(query, dims):
    assert to_dims(query) == dims


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (q.Raw("metacat", "files from a:b"), "raw metacat fragment"),
        (q.Dataset("raw or defname:everything"), "one word"),
        (q.Match(version="v1' or version 'v2"), "one word"),
        (q.Union(()), "empty union"),
        (q.ParentsOf(q.Dataset("a"), 0), "depth"),
        (q.Limit(q.Dataset("a"), "5"), "integer"),
        (q.ProjectFiles(P, ()), "consumption status"),
        ("defname:a", "query node str"),
    ],
)
def test_it_refuses_what_sam_cannot_say(query, message):
    with pytest.raises(DataHandlerError, match=message):
        to_dims(query)


# --- against the stub ---------------------------------------------------------------------------

T0 = datetime(2024, 4, 1, tzinfo=UTC)
RAW = [f"raw_{i:02d}.root" for i in range(6)]
SIM = [f"sim_{i:02d}.root" for i in range(6)]


@pytest.fixture
def sam(sam_server, settings):  # noqa: F811
    """The stub with raw_00..05 (runs 1,1,2,2,3,3), a located sim child each (v2), a reco
    grandchild for raw_00..02 (v3) of which only reco_00 is located; dataset "raw"; project P
    over the raws, one file in each consumption status and one never delivered.
    The handler reaches it through POMS_SAM_BASE, with a fake clock and sleeps recorded."""
    cat = sam_server.catalogue
    for i in range(6):
        cat.add_file(RAW[i], run_number=1 + i // 2, create_date=T0, end_time=T0 + timedelta(hours=i))
        cat.add_file(SIM[i], version="v2", create_date=T0 + timedelta(days=1), parents=(RAW[i],))
    for i in range(3):
        cat.add_file(f"reco_{i:02d}.root", version="v3", create_date=T0 + timedelta(days=2), parents=(SIM[i],))
        cat.files[f"reco_{i:02d}.root"].availability = "physical" if i == 0 else "virtual"
    cat.define("raw", "file_name like 'raw%'")
    statuses = ["consumed", "completed", "failed", "skipped", "delivered", None]
    cat.add_project(P, dict(zip(RAW, statuses, strict=True)), dataset="raw")

    settings.POMS_SAM_BASE = sam_server.url
    clock = FakeClock()
    sleeps = []
    handler = SamwebHandler(
        "nova",
        timeout=0.5,
        retries=2,
        create_pause=5.0,
        sleep=sleeps.append,
        failing_urls=FailingUrls(clock=clock, namespace=f"test-{uuid.uuid4().hex}"),
    )
    handler.server, handler.clock, handler.sleeps = sam_server, clock, sleeps
    return handler


class FakeClock:
    def __init__(self):
        self.now = 1_700_000_000.0

    def __call__(self):
        return self.now


CREATED = T0 + timedelta(hours=12)  # the submission ran after the raws, before its outputs

BEHAVIOUR = [
    ("mod", q.Stride(q.Dataset("raw"), 4, 1), [RAW[1], RAW[5]]),
    ("nfiles", q.Limit(q.Dataset("raw"), 2, 2), RAW[2:4]),
    ("limitn", q.Limit(q.Dataset("raw"), 2), RAW[:2]),
    ("byrun", q.And(q.Dataset("raw"), q.Match(run_number=2)), RAW[2:4]),
    (
        "new",
        q.And(
            q.Dataset("raw"), q.Match(end_time_after=T0 + timedelta(hours=1), end_time_until=T0 + timedelta(hours=3))
        ),
        RAW[2:4],
    ),
    ("stagedfiles", q.Limit(q.ProjectFiles(P, ("consumed",)), 5), RAW[:1]),
    ("recovery consumed_status", q.Minus(q.ProjectSnapshot(P), q.ProjectFiles(P, ("co%",))), RAW[2:]),
    ("recovery delivered_not_consumed", q.ProjectFiles(P, NOT_CONSUMED), RAW[3:5]),
    (
        "recovery pending_files: inputs without a located v3 grandchild",
        q.Minus(q.ProjectSnapshot(P), parents(2, version="v3", name_like="reco%", created_after=CREATED)),
        RAW[1:],
    ),
    (
        "dependents",
        q.And(q.ChildrenOf(q.ProjectSnapshot(P)), q.Match(version="v2", created_after=CREATED, name_like="sim%")),
        SIM,
    ),
    (
        "wrapup located: one reco located",
        q.And(
            q.ProjectSnapshot(P),
            parents(2, name_like="reco%", version="v3", created_after=CREATED, availability="physical"),
        ),
        RAW[:1],
    ),
    (
        "wrapup located: sims located",
        q.And(
            q.ProjectSnapshot(P),
            parents(name_like="sim%", version="v2", created_after=CREATED, availability="physical"),
        ),
        RAW,
    ),
    (
        "stats: all kids declared",
        q.And(q.ProjectSnapshot(P), parents(2, name_like="reco%", version="v3", created_after=CREATED)),
        RAW[:3],
    ),
    ("stats: some kids declared", q.And(q.ProjectSnapshot(P), parents(2, version="v3")), RAW[:3]),
    ("stats: kids located", q.And(q.ProjectSnapshot(P), parents(2, version="v3", availability="physical")), RAW[:1]),
    ("generic", q.Minus(q.Union((q.Dataset("raw"), q.Match(version="v2"))), q.Match(run_number=1)), RAW[2:] + SIM),
]


@pytest.mark.parametrize(("query", "files"), [row[1:] for row in BEHAVIOUR], ids=[row[0] for row in BEHAVIOUR])
def test_it_selects_the_files_the_dims_mean(sam, query, files):
    assert sam.list_files(query) == sorted(files)
    assert sam.count(query) == len(files)


def test_it_talks_to_the_experiments_sam_paths(sam):
    assert sam.count(q.Dataset("raw")) == 6
    assert sam.count_estimate(q.Dataset("raw")) == 6
    assert sam.list_files(q.Dataset("raw"), limit=2) == RAW[:2]
    assert sam.list_files(q.Limit(q.Dataset("raw"), 3, 1), limit=2) == RAW[1:3]
    assert sam.file_metadata(RAW[3])["runs"] == [[2, 0, "physics"]]
    assert {r.experiment for r in sam.server.requests} == {"nova"}
    assert sam.server.calls()[:2] == [("POST", "/files/count"), ("GET", "/files/count")]


def test_it_builds_the_base_url_as_poms_does(settings):
    assert sam_base_for("https://samweb.fnal.gov:8483", "nova") == "https://samnova.fnal.gov:8483"
    assert sam_base_for("https://samweb.fnal.gov:8483/", "samdev") == "https://samdev.fnal.gov:8483"
    assert sam_base_for("http://127.0.0.1:9999", "nova") == "http://127.0.0.1:9999"
    del settings.POMS_SAM_BASE
    assert SamwebHandler("uboone").url("/files/count") == "https://samuboone.fnal.gov:8483/sam/uboone/api/files/count"
    settings.POMS_SAM_CERT, settings.POMS_SAM_KEY = "/etc/poms/cert.pem", "/etc/poms/key.pem"
    assert SamwebHandler("nova").cert == ("/etc/poms/cert.pem", "/etc/poms/key.pem")


def test_it_defines_checks_and_deletes_definitions(sam):
    sam.define("slice0", q.Limit(q.Dataset("raw"), 2))
    assert sam.definition_exists("slice0")
    assert sam.server.catalogue.definitions["slice0"] == "defname: raw with limit 2"
    form = sam.server.requests[0].form
    assert form == {"defname": "slice0", "dims": "defname: raw with limit 2", "user": "sam", "group": "nova"}
    assert sam.count(q.Dataset("slice0")) == 2
    sam.delete_definition("slice0")
    sam.delete_definition("slice0")  # missing is fine
    assert not sam.definition_exists("slice0")


def test_it_replaces_an_existing_definition_on_409(sam):
    sam.define("poms_depends_12_1", q.Limit(q.Dataset("raw"), 1))
    sam.define("poms_depends_12_1", q.Limit(q.Dataset("raw"), 4))
    assert sam.count(q.Dataset("poms_depends_12_1")) == 4
    assert sam.server.calls(path="/definitions/*") == [
        ("POST", "/definitions/create"),
        ("POST", "/definitions/create"),  # 409
        ("GET", "/definitions/name/poms_depends_12_1"),
        ("DELETE", "/definitions/name/poms_depends_12_1"),
        ("POST", "/definitions/create"),
    ]
    assert sam.sleeps == []


def test_it_recreates_when_sam_says_409_for_a_name_already_gone(sam):
    sam.server.inject("/definitions/create", "conflict", times=1)
    sam.define("fresh", q.Dataset("raw"))
    assert sam.definition_exists("fresh")
    assert sam.server.calls(path="/definitions/*")[:3] == [
        ("POST", "/definitions/create"),
        ("GET", "/definitions/name/fresh"),  # 404: nothing to delete
        ("POST", "/definitions/create"),
    ]


def test_it_retries_writes_seconds_apart_then_gives_up(sam):
    sam.server.inject("/definitions/create", "error", times=2)
    sam.define("third_time", q.Dataset("raw"))
    assert sam.definition_exists("third_time")
    assert sam.sleeps == [5.0, 5.0]
    sam.server.inject("/definitions/create", "error", status=502)
    with pytest.raises(DataHandlerError, match=r"/sam/nova/api/definitions/create .*HTTP 502.*after 3 attempts"):
        sam.define("never", q.Dataset("raw"))
    sam.server.clear_faults()
    with pytest.raises(DataHandlerError, match="HTTP 400"):
        sam.define("bad", q.Raw("samweb", "no_such_dimension 3"))


def test_it_takes_snapshots(sam):
    first = sam.snapshot(q.Dataset("raw"))
    assert sam.server.calls(method="POST")[-1] == ("POST", "/definitions/name/raw/snapshot")
    slice_ = sam.snapshot(q.Limit(q.Minus(q.Dataset("raw"), q.Snapshot(first)), 2))
    assert isinstance(first, int) and slice_ != first
    sam.server.catalogue.add_file("raw_06.root")
    assert sam.count(q.Dataset("raw")) == 7
    assert sam.count(q.Snapshot(first)) == 6  # frozen
    assert sam.count(q.Snapshot(slice_)) == 0  # nothing left beyond the first snapshot
    assert [name for name in sam.server.catalogue.definitions if name.startswith("poms_snapshot_")]


def test_it_reads_project_summaries(sam):
    summary = sam.project_summary(P)
    assert summary == q.ProjectSummary(
        project=P,
        status="running",
        files_in_snapshot=6,
        counts={"consumed": 1, "completed": 1, "failed": 1, "skipped": 1, "delivered": 1},
    )
    assert summary.count(q.CONSUMED, q.COMPLETED) == 2
    request = sam.server.requests[-1]
    assert request.path == f"/projects/name/{P}/summary"
    assert request.params == {"format": "json", "process_limit": "0"}
    with pytest.raises(DataHandlerError, match="project nope: .*404"):
        sam.project_summary("nope")


def test_it_asks_sam_for_process_recovery(sam):
    recovery = sam.process_recovery(P)
    assert recovery == q.Raw(
        "samweb", f"snapshot_for_project_name {P} minus (project_name {P} and consumed_status 'co%')"
    )
    assert sam.server.requests[-1].params == {"useProcess": "1"}
    # 'co%' keeps the completed file out: failed, skipped, delivered and the undelivered one remain.
    assert sam.list_files(recovery) == RAW[2:]
    sam.server.catalogue.add_project("all_done", {RAW[0]: "consumed", RAW[1]: "completed"})
    assert sam.process_recovery("all_done") is None


def test_it_retries_5xx_with_backoff_then_succeeds(sam):
    sam.server.inject("/files/count", "error", times=2)
    assert sam.count(q.Dataset("raw")) == 6
    assert sam.server.calls(path="/files/count") == [("POST", "/files/count")] * 3
    assert sam.sleeps == [0.2, 0.4]


def test_a_timeout_is_an_error_not_a_hang(sam):
    sam.server.inject("/files/list", "timeout", delay=3.0)
    started = time.monotonic()
    with pytest.raises(DataHandlerError, match=r"/files/list: timed out after 0.5 s \(after 3 attempts\)"):
        sam.list_files(q.Dataset("raw"))
    assert time.monotonic() - started < 2.5


def test_an_unreachable_sam_is_an_error_too(settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    handler = SamwebHandler("nova", base=f"http://127.0.0.1:{port}", retries=1, sleep=lambda s: None)
    with pytest.raises(DataHandlerError, match=r"ConnectionError.*\(after 2 attempts\)"):
        handler.count(q.Dataset("raw"))
    with pytest.raises(DataHandlerError, match="ConnectionError"):
        handler.define("x", q.Dataset("raw"))


def test_a_failing_url_is_skipped_for_ten_minutes(sam):
    sam.server.inject("/projects/name/*", "error", status=500)
    with pytest.raises(DataHandlerError, match="HTTP 500"):
        sam.project_summary(P)
    assert len(sam.server.calls(path="/projects/*")) == 3
    sam.server.clear_faults()

    with pytest.raises(DataHandlerError, match="skipped: failed recently"):
        sam.project_summary(P)
    sam.clock.now += 599
    with pytest.raises(DataHandlerError, match="skipped: failed recently"):
        sam.project_summary(P)
    assert len(sam.server.calls(path="/projects/*")) == 3  # not asked again

    assert sam.count(q.Dataset("raw")) == 6  # other URLs are not affected
    sam.clock.now += 2
    assert sam.project_summary(P).files_in_snapshot == 6
    assert len(sam.server.calls(path="/projects/*")) == 4


def test_a_missing_definition_is_an_answer_not_a_fault(sam):
    for _ in range(2):
        with pytest.raises(DataHandlerError, match="HTTP 400.*Definition nope not found"):
            sam.count(q.Dataset("nope"))
    assert len(sam.server.calls(path="/files/count")) == 2  # asked both times, no retries
    assert sam.sleeps == []


@pytest.mark.parametrize("status", [200, 400])
def test_query_limit_counts_as_minus_one_for_reports(sam, status):
    sam.server.inject("/files/count", "query_limit", status=status)
    assert sam.count_estimate(q.Dataset("raw")) == -1
    with pytest.raises(DataHandlerError, match="query limit"):
        sam.count(q.Dataset("raw"))  # splits need a real number
    sam.server.clear_faults()
    sam.server.inject("/files/count", "query_limit", times=1)
    assert sam.count_many([q.Dataset("raw"), q.Dataset("raw")]) in ([-1, 6], [6, -1])
    assert sam.count_many([q.Dataset("nope")]) == [None]
