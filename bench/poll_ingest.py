"""Benchmark (not a test): how fast does one poll's answer get into the ledger? (DESIGN §4 "Poll")

It builds N running jobs across M submissions in a database of its own, then times
`submissions.services.record_observations()` on

  (a) a poll in which 10% of the jobs changed state, and
  (b) the same poll again, in which nothing changed,

against a floor measured in the same run: a raw COPY of the same changed rows into a temp
table plus one `UPDATE job … FROM` it (engineering.md §3.4 tier 2, without events or counters).
Targets: (a) within 3× the floor; (b) at most 20% of (a). See bench/README.md.

    cd /work/main && POMS_INSECURE_DEV_KEY=1 \
        DATABASE_URL=postgres://postgres@127.0.0.1:5432/poms_bench \
        .venv/bin/python bench/poll_ingest.py [--jobs N --submissions M] [--profile] [--strict]
"""

import argparse
import cProfile
import io
import os
import pstats
import re
import statistics
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Run as a plain script from anywhere: the project root must be importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "poms.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/poms_bench")

import django  # noqa: E402

django.setup()

import psycopg2  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import DatabaseError, connection, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from psycopg2 import sql  # noqa: E402

from campaigns.models import Campaign, JobType, LoginSetup, Stage  # noqa: E402
from poms.models import Experiment, Role  # noqa: E402
from submissions import ingest  # noqa: E402
from submissions.ingest import JOB_COLUMNS as JOB_FIELDS  # noqa: E402
from submissions.models import Job, JobEvent, JobState, StatusHistory, Submission  # noqa: E402
from submissions.models import Status as S  # noqa: E402
from submissions.observations import JobObservation  # noqa: E402
from submissions.services import record_observations  # noqa: E402

NAME = "bench-poll-ingest"  # experiment, user, campaign and stage names: the rows this bench owns
CHANGED_EVERY = 10  # every 10th job changes state in cycle (a): 10%, spread over every submission
TARGET_A_VS_BASELINE = 3.0
TARGET_B_VS_A = 0.20
T0 = datetime(2026, 1, 1, tzinfo=UTC)  # fixed times: a re-sent observation must equal the stored row
T1 = T0 + timedelta(hours=1)
COPY_COLUMNS = ("submission_id", "batch_job_id", *JOB_FIELDS)


# --- database and world (not measured) -------------------------------------------------------


def ensure_database(fresh=False):
    """Create (or with `fresh`, re-create) the bench database and migrate it.

    Refuses any database whose name lacks "bench": the bench deletes and rewrites rows.
    """
    db = settings.DATABASES["default"]
    name = db["NAME"]
    if "bench" not in name:
        sys.exit(f"refusing to run on database {name!r}: its name must contain 'bench' (set DATABASE_URL)")
    params = {"dbname": "postgres", "user": db["USER"], "password": db["PASSWORD"], "host": db["HOST"]}
    params["port"] = db["PORT"]
    conn = psycopg2.connect(**{k: v for k, v in params.items() if v})
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
    try:
        with conn.cursor() as cur:
            if fresh:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                print(f"created database {name}")
    finally:
        conn.close()
    try:
        call_command("migrate", verbosity=0, interactive=False)
    except DatabaseError as exc:
        # Typically migrations were rewritten since the last run; the bench data is disposable.
        sys.exit(f"migrate failed on {name}: {exc}\nrerun with --fresh-db to drop and re-create it")


def bench_stage():
    user, _ = get_user_model().objects.get_or_create(username=NAME)
    exp, _ = Experiment.objects.get_or_create(name=NAME)
    owned = {"creator": user, "creator_role": Role.PRODUCTION}
    login, _ = LoginSetup.objects.get_or_create(experiment=exp, name=NAME, defaults=owned)
    job_type, _ = JobType.objects.get_or_create(experiment=exp, name=NAME, defaults={**owned, "launch_script": "true"})
    campaign, _ = Campaign.objects.get_or_create(experiment=exp, name=NAME, defaults=owned)
    stage, _ = Stage.objects.get_or_create(
        campaign=campaign,
        name=NAME,
        defaults={**owned, "experiment": exp, "job_type": job_type, "login_setup": login},
    )
    return stage


def clean(stage):
    """Delete the submissions (and their jobs, events, history) a previous run left behind.

    Raw SQL because the ORM's cascade collector would load 100,000 jobs into Python first.
    """
    sub_ids = f"SELECT id FROM {Submission._meta.db_table} WHERE stage_id = %s"
    job_ids = f"SELECT id FROM {Job._meta.db_table} WHERE submission_id IN ({sub_ids})"
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(f"DELETE FROM {JobEvent._meta.db_table} WHERE job_id IN ({job_ids})", [stage.pk])
        cur.execute(f"DELETE FROM {Job._meta.db_table} WHERE submission_id IN ({sub_ids})", [stage.pk])
        cur.execute(f"DELETE FROM {StatusHistory._meta.db_table} WHERE submission_id IN ({sub_ids})", [stage.pk])
        cur.execute(f"DELETE FROM {Submission._meta.db_table} WHERE stage_id = %s", [stage.pk])


def running(sid, batch_job_id, n):
    """What a poll reports about a running job; also what the world stores for it."""
    return JobObservation(
        submission_id=sid,
        batch_job_id=batch_job_id,
        state=JobState.RUNNING,
        host=f"wn{n % 64:02d}.bench.example",
        started=T0,
        stdout_path=f"/bench/logs/{batch_job_id}.out",
        stderr_path=f"/bench/logs/{batch_job_id}.err",
    )


def completed(obs):
    return JobObservation(
        submission_id=obs.submission_id,
        batch_job_id=obs.batch_job_id,
        state=JobState.COMPLETED,
        exit_code=0,
        host=obs.host,
        started=obs.started,
        ended=T1,
        cpu_seconds=3412.5,
        wall_seconds=3600.0,
        memory_mb=1843.0,
        stdout_path=obs.stdout_path,
        stderr_path=obs.stderr_path,
    )


def as_row(obs, *extra):
    return (*(getattr(obs, c) for c in COPY_COLUMNS), *extra)


def copy_text(rows):
    """COPY text format: tab-separated, \\N for NULL (our values hold no tabs or backslashes)."""
    buf = io.StringIO()
    for row in rows:
        buf.write("\t".join(r"\N" if v is None else v.isoformat() if isinstance(v, datetime) else str(v) for v in row))
        buf.write("\n")
    buf.seek(0)
    return buf


def build_world(stage, n_jobs, n_subs):
    """M running submissions holding N running jobs, with counters that already match the jobs."""
    per, extra = divmod(n_jobs, n_subs)
    sizes = [per + (i < extra) for i in range(n_subs)]
    subs = Submission.objects.bulk_create(
        [
            Submission(
                stage=stage,
                experiment_id=stage.experiment_id,
                creator_id=stage.creator_id,
                creator_role=Role.PRODUCTION,
                launcher_id=stage.creator_id,
                batch_system="local",
                batch_id=f"{i}@bench",
                status=S.RUNNING,
                status_changed=T0,
                jobs_running=size,
            )
            for i, size in enumerate(sizes)
        ],
        batch_size=1000,
    )
    before, n = [], 0
    for sub, size in zip(subs, sizes, strict=True):
        for k in range(size):
            before.append(running(sub.pk, f"{sub.batch_id}.{k}", n))
            n += 1
    # COPY, not bulk_create: setup is not what we measure, and this keeps reruns quick.
    with transaction.atomic(), connection.cursor() as cur:
        cur.cursor.copy_expert(
            f"COPY {Job._meta.db_table} ({', '.join(COPY_COLUMNS)}, state_changed) FROM STDIN",
            copy_text(as_row(o, T0) for o in before),
        )
    return before


def vacuum():
    """Clear the dead rows the previous flip left, so that every repetition starts alike."""
    tables = (Job, JobEvent, Submission, StatusHistory)
    with connection.cursor() as cur:
        cur.execute(f"VACUUM (ANALYZE) {', '.join(m._meta.db_table for m in tables)}")


# --- the measurements ------------------------------------------------------------------------


def baseline(changed):
    """The floor: COPY the changed rows into a temp table, one UPDATE of the job table from it."""
    table = Job._meta.db_table
    sets = ", ".join(f"{c} = i.{c}" for c in JOB_FIELDS)
    with transaction.atomic(), connection.cursor() as cur:
        # Same column types as the job table, whatever the migrations say.
        cur.execute(
            f"CREATE TEMP TABLE bench_incoming ON COMMIT DROP AS "
            f"SELECT {', '.join(COPY_COLUMNS)} FROM {table} WITH NO DATA"
        )
        buf = copy_text(as_row(o) for o in changed)
        # The raw psycopg2 cursor: Django's wrapper neither runs nor logs COPY, so it is timed here.
        start = time.perf_counter()
        cur.cursor.copy_expert(f"COPY bench_incoming ({', '.join(COPY_COLUMNS)}) FROM STDIN", buf)
        copy = {"sql": "COPY bench_incoming FROM STDIN", "time": f"{time.perf_counter() - start:.3f}"}
        cur.execute(
            f"UPDATE {table} j SET {sets}, state_changed = now() FROM bench_incoming i "
            "WHERE j.submission_id = i.submission_id AND j.batch_job_id = i.batch_job_id"
        )
        updated = cur.rowcount
    if updated != len(changed):
        sys.exit(f"baseline updated {updated} rows, expected {len(changed)}")
    return copy


def timed(fn):
    """Wall time of fn() and the statements it sent; the COPY via the raw cursor is not among them."""
    with CaptureQueriesContext(connection) as ctx:
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
    return elapsed, ctx.captured_queries, result


def expect(what, got, want):
    # Not an assert: a wrong world would make every figure meaningless, even under python -O.
    if got != want:
        sys.exit(f"{what}: record_observations reported {got} writes, expected {want}; the world is inconsistent")


class Series:
    def __init__(self, label, rows_in, changed):
        self.label, self.rows_in, self.changed = label, rows_in, changed
        self.times, self.queries, self.transactions, self.last_queries = [], [], [], []

    def add(self, elapsed, queries):
        self.times.append(elapsed)
        # Django also logs BEGIN/COMMIT; count statements and transactions apart.
        statements = [q for q in queries if q["sql"] not in ("BEGIN", "COMMIT")]
        self.queries.append(len(statements))
        self.transactions.append(sum(q["sql"] == "COMMIT" for q in queries))
        self.last_queries = queries

    @property
    def median(self):
        return statistics.median(self.times)


def measure(before, after, changed, repeats):
    a = Series(f"(a) record_observations, {100 // CHANGED_EVERY}% changed", len(after), len(changed))
    cold = Series("(a) the same, first poll in this process", len(after), len(changed))
    b = Series("(b) record_observations, nothing changed", len(after), 0)
    base = Series("baseline: COPY to temp + 1 UPDATE", len(changed), len(changed))
    for rep in range(repeats):
        # (a) as a poll worker that has just started (or whose copy was evicted): it reads the
        # stored job rows back from the database. Then flip the jobs back and measure (a) again as
        # the steady state: the worker that wrote the rows last poll compares with its own copy.
        vacuum()
        ingest.MIRROR.clear()
        elapsed, queries, writes = timed(lambda: record_observations(after))
        expect("cycle (a), first poll", writes, len(changed))
        cold.add(elapsed, queries)
        expect("revert", record_observations(before), len(changed))
        vacuum()
        elapsed, queries, writes = timed(lambda: record_observations(after))
        expect("cycle (a)", writes, len(changed))
        a.add(elapsed, queries)
        elapsed, queries, writes = timed(lambda: record_observations(after))
        expect("cycle (b)", writes, 0)
        b.add(elapsed, queries)
        # Flip the jobs back so that the baseline (and the next repetition) starts from the same state.
        expect("revert", record_observations(before), len(changed))
        vacuum()
        elapsed, queries, copy = timed(lambda: baseline(changed))
        base.add(elapsed, [*queries, copy])
        # The baseline wrote job rows behind record_observations' back, as another writer would:
        # a new poll_version tells the poll its copy is stale, so this revert reads the rows back.
        Submission.objects.update(poll_version=ingest.new_version())
        expect("revert baseline", record_observations(before), len(changed))
        print(
            f"  repetition {rep + 1}/{repeats}: (a) {a.times[-1]:.3f}s  (a, first poll) {cold.times[-1]:.3f}s  "
            f"(b) {b.times[-1]:.3f}s  baseline {base.times[-1]:.3f}s",
            flush=True,
        )
    return a, cold, b, base


# --- report ----------------------------------------------------------------------------------


def rate(rows, seconds):
    return f"{rows / seconds:,.0f}" if rows and seconds else "—"


def report(a, cold, b, base, repeats):
    header = (
        f"{'measurement':<44} {'rows in':>9} {'changed':>8} {'median s':>9} {'min s':>8} {'max s':>8} "
        f"{'rows in/s':>11} {'changed/s':>10} {'queries':>8} {'tx':>3}"
    )
    print()
    print(
        f"median of {repeats} runs each; 'rows in' = observations fed (baseline: rows copied); "
        "queries = SQL statements without BEGIN/COMMIT; tx = transactions"
    )
    print(header)
    print("-" * len(header))
    for s in (a, cold, b, base):
        # Every repetition should issue the same statements; show it if one did not.
        queries = "/".join(sorted({str(q) for q in s.queries}))
        tx = "/".join(sorted({str(t) for t in s.transactions}))
        print(
            f"{s.label:<44} {s.rows_in:>9,} {s.changed:>8,} {s.median:>9.3f} {min(s.times):>8.3f} "
            f"{max(s.times):>8.3f} {rate(s.rows_in, s.median):>11} {rate(s.changed, s.median):>10} "
            f"{queries:>8} {tx:>3}"
        )
    print()
    ratio_a = a.median / base.median
    ratio_b = b.median / a.median
    ok_a = ratio_a <= TARGET_A_VS_BASELINE
    ok_b = ratio_b <= TARGET_B_VS_A
    print(f"(a) / baseline = {ratio_a:6.1f}×   target ≤ {TARGET_A_VS_BASELINE:.0f}×    {'PASS' if ok_a else 'MISS'}")
    ratio_cold = cold.median / base.median
    print(f"   first poll in a process: {ratio_cold:.1f}× the baseline (not a target: once per worker start)")
    print(f"(b) / (a)      = {ratio_b:6.0%}    target ≤ {TARGET_B_VS_A:.0%}    {'PASS' if ok_b else 'MISS'}")
    print()
    for s in (a, cold, b, base):
        breakdown(s)
    return ok_a and ok_b


def statement_kind(sql_text):
    """'UPDATE submissions_submission (CASE WHEN: bulk_update)' and the like: verb, table, shape."""
    verb = sql_text.split(None, 1)[0].upper()
    match = re.search(r'\b(?:COPY|FROM|INTO|UPDATE|TABLE)\s+"?(\w+)"?', sql_text, re.IGNORECASE)
    kind = f"{verb} {match.group(1) if match else ''}".strip()
    if verb == "SELECT" and sql_text.rstrip().upper().endswith("FOR UPDATE"):
        kind += " FOR UPDATE"
    if "CASE WHEN" in sql_text:
        kind += " (CASE WHEN: bulk_update)"
    if "ON CONFLICT" in sql_text:
        kind += " ON CONFLICT"
    return kind


def breakdown(s):
    """Where the last run's time went: SQL per statement kind (as Django's debug cursor timed it:
    send, server work, receive) and everything else, which is Python."""
    per_kind = defaultdict(lambda: [0, 0.0])
    for q in s.last_queries:
        entry = per_kind[statement_kind(q["sql"])]
        entry[0] += 1
        entry[1] += float(q["time"])
    total_sql = sum(t for _, t in per_kind.values())
    elapsed = s.times[-1]
    print(f"{s.label} — last run {elapsed:.3f}s:")
    for kind, (count, seconds) in sorted(per_kind.items(), key=lambda kv: -kv[1][1]):
        print(f"    {count:>4} × {kind:<58} {seconds:8.3f}s")
    print(
        f"    SQL {total_sql:.3f}s; Python (building rows, diffing, ORM, result conversion) {elapsed - total_sql:.3f}s"
    )


def profile(before, after, changed, top):
    """cProfile one (a) and one (b) cycle; the state is restored afterwards."""
    for label, want in (("(a)", len(changed)), ("(b)", 0)):
        prof = cProfile.Profile()
        prof.enable()
        writes = record_observations(after)
        prof.disable()
        expect(f"profiled {label}", writes, want)
        out = io.StringIO()
        pstats.Stats(prof, stream=out).strip_dirs().sort_stats("tottime").print_stats(top)
        print(f"\ncProfile {label}, top {top} by own time:")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip()))
    expect("revert after profile", record_observations(before), len(changed))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="active jobs (default 100,000)")
    parser.add_argument("--submissions", type=int, default=1_000, help="submissions holding them (default 1,000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the median is reported")
    parser.add_argument("--profile", action="store_true", help="also cProfile one (a) and one (b) cycle")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--fresh-db", action="store_true", help="drop and re-create the bench database first")
    args = parser.parse_args()
    if not 0 < args.submissions <= args.jobs:
        parser.error("need 0 < --submissions ≤ --jobs (every submission needs a job to have a status)")

    ensure_database(fresh=args.fresh_db)
    start = time.perf_counter()
    stage = bench_stage()
    clean(stage)
    before = build_world(stage, args.jobs, args.submissions)
    after = [completed(o) if i % CHANGED_EVERY == 0 else o for i, o in enumerate(before)]
    changed = after[::CHANGED_EVERY]
    # The first poll of the fresh world must find nothing to change, or (b) would not be "nothing".
    expect("first poll of the fresh world", record_observations(before), 0)
    print(
        f"world: {args.jobs:,} running jobs in {args.submissions:,} submissions, "
        f"{len(changed):,} change in (a); built in {time.perf_counter() - start:.1f}s (not measured)"
    )

    a, cold, b, base = measure(before, after, changed, args.repeats)
    ok = report(a, cold, b, base, args.repeats)
    if args.profile:
        profile(before, after, changed, top=15)
    connection.close()
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
