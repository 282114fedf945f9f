"""The catalogue's HTTP API for jobs, its command-line client, and the demo's file flow."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client

from campaigns.models import Stage
from launches import services
from launches.tasks import launch_submission
from poms.models import Experiment
from poms.permissions import actor_for
from poms.tokens import create_api_token, issue_callback_token
from sam_adapter import query as q
from sam_adapter.catalog import CatalogHandler
from sam_adapter.models import CatalogFile, NamedDataset, Parentage, Project, ProjectFile, Snapshot
from submissions.models import Submission
from tests.factories import ExperimentFactory, SubmissionFactory, UserFactory
from tests.launches.helpers import wait_for

API = "/catalog/api"
CLIENT = Path(settings.BASE_DIR) / "bin" / "poms_catalog"
RAW = [f"raw_{i:02d}.root" for i in range(5)]


def auth(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}


def post(token, path, body, exp="nova"):
    data = body if isinstance(body, bytes) else json.dumps(body)
    return Client().post(f"{API}/{exp}/{path}", data=data, content_type="application/json", **auth(token))


def get(token, path, exp="nova"):
    return Client().get(f"{API}/{exp}/{path}", **auth(token))


@pytest.fixture
def cat(world):
    """Five located raw files in the explicit dataset `raw`; `byquery` is defined by a query."""
    handler = CatalogHandler(world.experiment)
    for name in RAW:
        handler.declare(name, dataset="raw", version="v1", location="/pnfs/raw", run_number=1)
    handler.define("byquery", q.Match(version="v1"))
    return handler


@pytest.fixture
def tokens(world):
    sub = SubmissionFactory(stage=world.production_stage)
    return SimpleNamespace(
        sub=sub,
        job=issue_callback_token(world.users["production"], world.experiment, sub.pk),
        analyst=create_api_token(world.users["analysis"], "laptop")[1],
    )


def catalog_state():
    """Everything a request could change, to show a refused one changed nothing."""
    return (
        list(CatalogFile.objects.order_by("pk").values_list("name", "declared_by_submission", "metadata")),
        list(Parentage.objects.order_by("pk").values_list("parent_id", "child_id")),
        list(NamedDataset.objects.order_by("pk").values_list("name", "query")),
        list(NamedDataset.files.through.objects.order_by("pk").values_list("nameddataset_id", "catalogfile_id")),
        list(Project.objects.order_by("pk").values_list("name", "dataset", "status", "submission_id")),
        list(ProjectFile.objects.order_by("pk").values_list("status", "process")),
        Snapshot.objects.count(),
    )


# --- the endpoints ---------------------------------------------------------------------------------
def test_a_job_starts_a_project_takes_every_file_once_and_reports(cat, tokens):
    reply = post(tokens.job, "projects/start", {"project": "p1", "dataset": "raw"})
    assert reply.status_code == 201
    assert reply.json() == {
        "project": "p1", "dataset": "raw", "files": 5, "submission_id": tokens.sub.pk, "status": "running",
    }  # fmt: skip
    # Every job of the submission may start it: they join the same project.
    again = post(tokens.job, "projects/start", {"project": "p1", "dataset": "raw"})
    assert (again.status_code, again.json()["files"], again.json()["submission_id"]) == (200, 5, tokens.sub.pk)
    assert Project.objects.filter(name="p1").count() == 1
    # A member's personal token may not take or fail the files of a submission's project.
    for path, body in [("projects/start", {"project": "p1", "dataset": "raw"}), ("projects/p1/next", {"process": "me"}),
                       ("projects/p1/status", {"file": RAW[0], "status": "failed"})]:  # fmt: skip
        refused = post(tokens.analyst, path, body)
        assert refused.status_code == 403 and "only its jobs" in refused.json()["error"]
    given = []
    for process in ["job1", "job2"] * 3:
        answer = post(tokens.job, "projects/p1/next", {"process": process}).json()
        if answer["file"] is not None:
            assert answer["location"] == "/pnfs/raw" and answer["metadata"] == {}
            given.append((answer["file"], process))
    assert sorted(name for name, _ in given) == RAW
    assert post(tokens.job, "projects/p1/next", {"process": "job3"}).json() == {
        "project": "p1", "file": None, "metadata": {},
    }  # fmt: skip
    for name, _ in given[:3]:
        assert post(tokens.job, "projects/p1/status", {"file": name, "status": "consumed"}).status_code == 200
    post(tokens.job, "projects/p1/status", {"file": given[3][0], "status": "failed"})
    # job2 has reported all it got; job1 still holds the fifth file, so the project runs on…
    assert given[4][1] == "job1"
    assert post(tokens.job, "projects/p1/done", {"process": "job2"}).json()["status"] == "running"
    # …until job1 ends without reporting it: the file becomes unknown (as in SAM) and the project ends.
    done = post(tokens.job, "projects/p1/done", {"process": "job1"})
    assert done.json() == {"project": "p1", "process": "job1", "status": "completed"}
    summary = cat.project_summary("p1")
    assert (summary.status, summary.files_in_snapshot) == ("completed", 5)
    assert summary.counts == {"consumed": 3, "failed": 1, "unknown": 1}


def test_declaring_output_files_with_parents_into_an_explicit_dataset(cat, tokens):
    body = {
        "name": "gen_1.root", "size": 2048, "checksum": "adler32:1234abcd", "version": "v2", "run_number": 7,
        "subrun": 3, "event_count": 100, "metadata": {"generator": "genie"}, "location": "/pnfs/gen",
        "end_time": "2025-01-31T12:00:00Z", "parents": ["raw_00.root", "raw_01.root", "raw_00.root"],
        "dataset": "poms_depends_9_1",
    }  # fmt: skip
    reply = post(tokens.job, "files/declare", body)
    assert reply.status_code == 201
    assert reply.json() == {
        "file": "gen_1.root", "parents": ["raw_00.root", "raw_01.root"], "dataset": "poms_depends_9_1",
        "declared_by_submission": tokens.sub.pk,
    }  # fmt: skip
    f = CatalogFile.objects.get(name="gen_1.root")
    assert (f.size, f.checksum, f.version, f.run_number, f.subrun, f.event_count, f.location) == (
        2048, "adler32:1234abcd", "v2", 7, 3, 100, "/pnfs/gen",
    )  # fmt: skip
    assert f.metadata == {"generator": "genie"} and f.end_time.isoformat() == "2025-01-31T12:00:00+00:00"
    # Parentage rows read directly: the M2M `CatalogFile.parents` lacks through_fields, so Django
    # walks it from the Parentage.parent side (it yields children).
    parents = Parentage.objects.filter(child=f).values_list("parent__name", flat=True)
    assert sorted(parents) == RAW[:2]
    assert cat.list_files(q.Dataset("poms_depends_9_1")) == ["gen_1.root"]
    # The dataset is this submission's jobs' to fill: not a person's token, not another launch's.
    before = catalog_state()
    other = issue_callback_token(tokens.sub.launcher, tokens.sub.experiment, tokens.sub.pk + 1)
    for token in (tokens.analyst, other):
        refused = post(token, "files/declare", {"name": "gen_2.root", "dataset": "poms_depends_9_1"})
        assert refused.status_code == 400 and f"filled by submission {tokens.sub.pk}'s jobs" in refused.json()["error"]
    assert catalog_state() == before
    # A personal token declares too, for no submission, into a dataset no launch owns.
    mine = post(tokens.analyst, "files/declare", {"name": "gen_2.root", "dataset": "by_hand"})
    assert mine.json()["declared_by_submission"] is None
    assert get(tokens.job, "datasets/poms_depends_9_1/count").json() == {"dataset": "poms_depends_9_1", "count": 1}
    assert cat.list_files(q.ChildrenOf(q.Dataset("raw"))) == ["gen_1.root"]


def test_listing_and_counting_datasets(cat, tokens):
    assert get(tokens.analyst, "datasets/raw/files").json() == {"dataset": "raw", "files": RAW}
    assert get(tokens.analyst, "datasets/raw/files?limit=2").json()["files"] == RAW[:2]
    assert get(tokens.job, "datasets/byquery/count").json() == {"dataset": "byquery", "count": 5}
    missing = get(tokens.job, "datasets/nope/count")
    assert (missing.status_code, missing.json()) == (404, {"error": "no dataset named 'nope' in experiment nova"})
    assert get(tokens.job, "datasets/raw/files?limit=0").status_code == 400


# --- who may call -----------------------------------------------------------------------------------
ENDPOINTS = [
    ("post", "projects/start", {"project": "p9", "dataset": "raw"}),
    ("post", "projects/p1/next", {"process": "j"}),
    ("post", "projects/p1/status", {"file": "raw_00.root", "status": "consumed"}),
    ("post", "projects/p1/done", {"process": "j"}),
    ("post", "files/declare", {"name": "new.root", "parents": ["raw_00.root"], "dataset": "out"}),
    ("get", "datasets/raw/files", None),
    ("get", "datasets/raw/count", None),
]


@pytest.fixture
def started(cat):
    cat.start_project("p1", "raw")
    return cat


def call(method, token, path, body, exp="nova"):
    return post(token, path, body, exp) if method == "post" else get(token, path, exp)


@pytest.mark.parametrize("method, path, body", ENDPOINTS)
def test_every_endpoint_needs_a_token_for_the_experiment(world, started, tokens, method, path, body):
    before = catalog_state()
    dune = ExperimentFactory(name="dune")
    elsewhere = issue_callback_token(world.users["production"], dune, 99)
    _, outsider = create_api_token(world.users["non-member"], "x")
    refusals = [
        (call(method, None, path, body), 401, "Authorization: Bearer"),
        (call(method, "pomsu_not-a-token", path, body), 401, "Authorization: Bearer"),
        (call(method, "pomss_not-a-token", path, body), 401, "Authorization: Bearer"),
        (call(method, elsewhere, path, body), 403, "works only in its own experiment"),
        (call(method, outsider, path, body), 403, "outsider is not a member of experiment nova"),
        (call(method, tokens.job, path, body, exp="nosuch"), 404, "no experiment named 'nosuch'"),
    ]
    for reply, status, message in refusals:
        assert (reply.status_code, reply["Content-Type"]) == (status, "application/json")
        assert message in reply.json()["error"]
    # A logged-in browser session is not a credential here (and needs no CSRF token to be refused).
    session = world.client("production")
    reply = session.post(f"{API}/nova/{path}", data=json.dumps(body), content_type="application/json")
    assert reply.status_code == (401 if method == "post" else 405)
    assert catalog_state() == before
    # The same call with the experiment's own tokens goes through; root needs no membership.
    root = create_api_token(UserFactory(username="root", is_superuser=True), "r")[1]
    assert call(method, root, path, body).status_code in (200, 201)


def test_the_wrong_method_is_refused(started, tokens):
    reply = get(tokens.job, "projects/start")
    assert (reply.status_code, reply.json(), reply["Allow"]) == (405, {"error": "use POST"}, "POST")
    assert post(tokens.job, "datasets/raw/count", {}).status_code == 405


# --- bad input ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path, body, status, message",
    [
        ("projects/start", b"{not json", 400, "the body is not valid JSON"),
        ("projects/start", b"\xff\xfe", 400, "the body is not valid JSON"),
        ("projects/start", b"[1, 2]", 400, "the body must be a JSON object"),
        ("projects/start", {"project": "p2"}, 400, "dataset: This field is required."),
        ("projects/start", {"project": 5, "dataset": "raw"}, 400, "project: must be a string"),
        ("projects/start", {"project": "a/b", "dataset": "raw"}, 400, "project: may not contain '/'"),
        ("projects/start", {"project": "p2", "dataset": "nope"}, 404, "no dataset named 'nope'"),
        ("projects/start", {"project": "p1", "dataset": "byquery"}, 409, "p1 already exists over dataset raw"),
        ("projects/start", {"project": "p2", "dataset": "raw", "submission_id": 3}, 400, "unknown field(s)"),
        ("projects/nope/next", {"process": "j"}, 404, "no project named 'nope'"),
        ("projects/p1/next", {}, 400, "process: This field is required."),
        ("projects/p1/next", {"process": "j" * 101}, 400, "process: Ensure this value has at most 100"),
        ("projects/p1/status", {"file": "raw_00.root", "status": "eaten"}, 400, "status: Select a valid choice"),
        ("projects/p1/status", {"file": "ghost.root", "status": "consumed"}, 400, "ghost.root is not part of"),
        ("projects/p1/done", {"process": ["j"]}, 400, "process: must be a string"),
        ("files/declare", {"name": "c.root", "parents": ["raw_00.root", "ghost.root"]}, 400, "unknown parent"),
        ("files/declare", {"name": "raw_00.root", "dataset": "out"}, 409, "raw_00.root is already declared"),
        ("files/declare", {"name": "c.root", "parent": ["raw_00.root"]}, 400, "unknown field(s): parent"),
        ("files/declare", {"name": "c.root", "parents": ["c.root"]}, 400, "cannot be its own parent"),
        ("files/declare", {"name": "c.root", "parents": "raw_00.root"}, 400, "parents: must be a list"),
        ("files/declare", {"name": "c.root", "size": "12"}, 400, "size: must be an integer"),
        ("files/declare", {"name": "c.root", "size": -1}, 400, "size: Ensure this value is greater than"),
        ("files/declare", {"name": "c.root", "run_number": True}, 400, "run_number: must be an integer"),
        ("files/declare", {"name": "c.root", "run_number": 2**31}, 400, "run_number: Ensure this value is less"),
        ("files/declare", {"name": "c.root", "metadata": [1]}, 400, "metadata: must be a JSON object"),
        ("files/declare", {"name": "c.root", "end_time": "yesterday"}, 400, "end_time: Enter a valid date/time"),
        ("files/declare", {"name": "x" * 256}, 400, "name: Ensure this value has at most 255"),
        ("files/declare", {"name": "/pnfs/c.root"}, 400, "name: may not contain '/'"),
        ("files/declare", {"name": "c.root", "location": 3}, 400, "location: must be a string"),
        ("files/declare", {"name": "c.root", "dataset": "byquery"}, 400, "defined by a query"),
        ("files/declare", {}, 400, "name: This field is required."),
    ],
)
def test_bad_requests_get_a_clear_error_and_change_nothing(started, tokens, path, body, status, message):
    before = catalog_state()
    reply = post(tokens.job, path, body)
    assert (reply.status_code, reply["Content-Type"]) == (status, "application/json")
    assert message in reply.json()["error"]
    assert catalog_state() == before


# --- the client, end to end ---------------------------------------------------------------------------
def run_client(*argv, url, token, submission_id=None, check=True):
    env = {
        "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "POMS_URL": url,
        "POMS_SUBMISSION_TOKEN": token, "GROUP": "nova", "POMS_CATALOG_TIMEOUT": "20",
    }  # fmt: skip
    if submission_id is not None:
        env["POMS4_SUBMISSION_ID"] = str(submission_id)
    done = subprocess.run(
        [sys.executable, str(CLIENT), *argv], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.mark.django_db(transaction=True)
def test_the_client_runs_a_job_against_a_live_server(world, cat, tokens, live_server):
    kw = {"url": live_server.url, "token": tokens.job}
    started = run_client("start-project", "--project", "p_e2e", "--dataset", "raw", submission_id=tokens.sub.pk, **kw)
    assert started.stdout == "project p_e2e over dataset raw: 5 files\n"
    assert Submission.objects.get(pk=tokens.sub.pk).params["project"] == "p_e2e"  # via update_submission
    assert run_client("count", "raw", **kw).stdout == "5\n"
    assert run_client("list", "raw", **kw).stdout.split() == RAW
    given = []
    while True:
        process = f"job{len(given) % 2}"
        nxt = run_client("next-file", "--project", "p_e2e", "--process", process, check=False, **kw)
        if nxt.returncode == 1:
            assert nxt.stdout == nxt.stderr == ""  # none left: exit 1, nothing printed
            break
        assert nxt.returncode == 0, nxt.stderr
        name = nxt.stdout.strip()
        given.append(name)
        status = "failed" if len(given) == 5 else "consumed"
        if status == "consumed":
            run_client("declare", f"sim_{name}", "--parent", name, "--version", "v2", "--location", "/pnfs/sim",
                       "--size", "2048", "--run", "1", "--metadata", '{"stage": "sim"}', **kw)  # fmt: skip
        run_client("status", "--project", "p_e2e", "--file", name, status, **kw)
    assert sorted(given) == RAW
    for process in ("job0", "job1"):
        run_client("done", "--project", "p_e2e", "--process", process, **kw)

    summary = CatalogHandler(world.experiment).project_summary("p_e2e")
    assert (summary.status, summary.files_in_snapshot, summary.counts) == (
        "completed", 5, {"consumed": 4, "failed": 1},
    )  # fmt: skip
    children = CatalogFile.objects.filter(name__startswith="sim_").order_by("name")
    assert [c.name for c in children] == [f"sim_{n}" for n in sorted(given[:4])]
    assert {(c.version, c.location, c.size, c.run_number, c.declared_by_submission) for c in children} == {
        ("v2", "/pnfs/sim", 2048, 1, tokens.sub.pk)
    }
    assert Project.objects.get(name="p_e2e").submission_id == tokens.sub.pk

    # Refusals: the server's message on stderr, exit 2, nothing changed.
    dup = run_client("declare", f"sim_{given[0]}", "--parent", given[0], check=False, **kw)
    assert dup.returncode == 2 and f"sim_{given[0]} is already declared" in dup.stderr and dup.stdout == ""
    other = run_client("count", "raw", check=False, url=live_server.url, token="pomsu_bogus")
    assert other.returncode == 2 and "refused (HTTP 401)" in other.stderr
    # Nobody listening: a few retries, then exit 3 and a clear message (never 1, "no file left").
    gone = run_client(
        "--retries", "1", "next-file", "--project", "p_e2e", check=False, url="http://127.0.0.1:9", token="x"
    )
    assert (
        gone.returncode == 3 and "cannot reach http://127.0.0.1:9/catalog/api/nova/projects/p_e2e/next" in gone.stderr
    )
    unset = subprocess.run([sys.executable, str(CLIENT), "count", "raw"], env={"PATH": os.environ["PATH"]},
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert unset.returncode == 3 and "not set: POMS_URL, POMS_SUBMISSION_TOKEN or POMS_API_TOKEN" in unset.stderr


# --- the demo -------------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_the_demo_generates_files_and_the_next_stage_consumes_them(live_server, settings, monkeypatch):
    settings.POMS_URL = live_server.url  # what jobs call back
    # The launch is run here, in the test, not by whatever worker listens on the broker.
    monkeypatch.setattr(launch_submission, "delay_on_commit", lambda *a, **k: None)
    call_command("load_demo", jobs=2, sleep="0", fail_fraction="0", stdout=open(os.devnull, "w"))
    exp = Experiment.objects.get(name="demo")
    prod = actor_for(exp.memberships.get(user__username="prod").user, exp)
    gen, sim = (Stage.objects.get(campaign__name="mc_demo", name=n) for n in ("gen", "sim"))
    handler = CatalogHandler(exp)

    gen_sub = services.launch_stage(gen, actor=prod)
    assert services.run_launch(gen_sub.pk)
    depends = f"poms_depends_{gen_sub.pk}_1"
    wait_for(lambda: handler.definition_exists(depends) and handler.count(q.Dataset(depends)) == 2,
             what=f"gen jobs to declare 2 files into {depends}")  # fmt: skip
    assert {(f.version, f.declared_by_submission) for f in CatalogFile.objects.filter(experiment=exp)} == {
        ("v1_0", gen_sub.pk)
    }

    sim_sub = services.launch_stage(sim, actor=prod, dataset=depends)
    assert services.run_launch(sim_sub.pk), Path(Submission.objects.get(pk=sim_sub.pk).launch_log).read_text()
    project = f"poms_sim_{sim_sub.pk}"
    assert Submission.objects.get(pk=sim_sub.pk).params["project"] == project
    wait_for(lambda: Project.objects.filter(name=project, status="completed").exists(),
             what=f"sim jobs to consume project {project}")  # fmt: skip
    summary = handler.project_summary(project)
    assert (summary.files_in_snapshot, summary.counts) == (2, {"consumed": 2})
    children = handler.list_files(q.ChildrenOf(q.Dataset(depends)))
    gen_files = handler.list_files(q.Dataset(depends))
    assert children == sorted(f"sim_{sim_sub.pk}_{name}" for name in gen_files)
    assert Project.objects.get(name=project).submission_id == sim_sub.pk

    # A launch over a dataset that does not exist fails at once, with the catalogue's reason in its log.
    bad = services.launch_stage(sim, actor=prod, dataset="no_such_dataset")
    assert not services.run_launch(bad.pk)
    log = Path(Submission.objects.get(pk=bad.pk).launch_log).read_text()
    assert "refused (HTTP 404): no dataset named 'no_such_dataset' in experiment demo" in log


def test_a_launch_token_works_only_on_its_own_submissions_projects(world, cat, tokens):
    other = SubmissionFactory(stage=world.production_stage)
    other_token = issue_callback_token(world.users["production"], world.experiment, other.pk)
    assert post(tokens.job, "projects/start", {"project": "mine", "dataset": "raw"}).status_code == 201
    before = catalog_state()
    for path, body in [
        ("projects/mine/next", {"process": "p"}),
        ("projects/mine/status", {"file": RAW[0], "status": "failed"}),
        ("projects/mine/done", {"process": "p"}),
        ("projects/start", {"project": "mine", "dataset": "raw"}),
    ]:
        reply = post(other_token, path, body)
        assert reply.status_code == 403 and "may not use project mine" in reply.json()["error"], path
    assert catalog_state() == before
    assert post(tokens.analyst, "projects/mine/next", {"process": "p"}).status_code == 403  # nor a person's token
    assert catalog_state() == before
