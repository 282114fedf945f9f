#!/usr/bin/env python3
"""A single-node Slurm cluster on this machine, for tests and development (DESIGN §2).

`python scripts/slurm.py up` (or `ensure_slurm()`) installs slurm-wlm and munge on Debian when
`sbatch` is missing, starts munged, writes /etc/slurm/slurm.conf with its state, spool, logs and
job-completion log under <var>/slurm/, starts slurmctld and slurmd, and waits for the node to be
usable. A second call with the cluster up only checks it. Standard library only: CI runs this
before the virtualenv exists.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Same rule as poms/settings.py VAR_DIR, so the adapter finds the jobcomp log this writes.
VAR = Path(os.environ.get("POMS_VAR_DIR") or ROOT / "var") / "slurm"
JOBCOMP_LOG = VAR / "jobcomp.log"
CONF = Path("/etc/slurm/slurm.conf")
MUNGE_DIRS = ("/etc/munge", "/var/lib/munge", "/var/log/munge", "/run/munge")
READY_STATES = {"idle", "mix", "mixed", "alloc", "allocated", "comp", "completing"}
WAIT_SECONDS = 30


class SlurmSetupError(RuntimeError):
    pass


def say(text):
    print(f"[slurm] {text}", flush=True)


def _run(argv, *, timeout=20, check=True, input=None, env=None):
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input, env=env)
    except FileNotFoundError as exc:
        raise SlurmSetupError(f"{argv[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise SlurmSetupError(f"{' '.join(argv)} did not finish within {timeout}s") from exc
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise SlurmSetupError(f"{' '.join(argv)} exited {result.returncode}: {detail}")
    return result


def _is_debian():
    try:
        release = Path("/etc/os-release").read_text()
    except OSError:
        return False
    return "ID=debian" in release or "ID_LIKE=debian" in release


def _install():
    if os.geteuid() != 0 or not _is_debian():
        raise SlurmSetupError(
            "sbatch is not installed. Install Slurm and munge first, e.g. on Debian/Ubuntu as root: "
            "`apt-get install -y slurm-wlm munge`, then run `python scripts/slurm.py up` as root."
        )
    say("installing slurm-wlm and munge with apt-get (about 15 s)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "slurm-wlm", "munge"]
    if subprocess.run(argv, env=env, capture_output=True).returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        result = subprocess.run(argv, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise SlurmSetupError(f"apt-get install slurm-wlm munge failed: {result.stderr.strip()[-2000:]}")


def _munge_works():
    if not shutil.which("munge") or not shutil.which("unmunge"):
        return False
    try:
        cred = subprocess.run(["munge", "-n"], capture_output=True, text=True, timeout=5)
        if cred.returncode != 0:
            return False
        check = subprocess.run(["unmunge"], input=cred.stdout, capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        return False
    return check.returncode == 0 and "STATUS:" in check.stdout and "Success" in check.stdout


def _ensure_munge():
    if _munge_works():
        return
    if os.geteuid() != 0:
        raise SlurmSetupError("munged is not running and only root can start it (`runuser -u munge -- munged`)")
    say("starting munged")
    for d in MUNGE_DIRS:
        Path(d).mkdir(parents=True, exist_ok=True)
        shutil.chown(d, "munge", "munge")
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        _run(["mungekey", "--create", "--keyfile", str(key)])
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
    # A stale socket or pid from a munged that died makes the new one refuse to start.
    _run(["runuser", "-u", "munge", "--", "munged", "--force"])
    for _ in range(50):
        if _munge_works():
            return
        time.sleep(0.1)
    raise SlurmSetupError("munged started but `munge -n | unmunge` does not report Success (see /var/log/munge)")


def _real_memory_mb():
    # A node declaring more memory than it has is drained at registration ("Low RealMemory").
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return min(4000, int(line.split()[1]) // 1024)
    except (OSError, ValueError):
        pass
    return 4000


def config_text():
    v = VAR
    return "\n".join(
        [
            "# Written by scripts/slurm.py: a single-node cluster for POMS tests and development.",
            "ClusterName=poms",
            "SlurmctldHost=localhost",
            "SlurmUser=root",
            "AuthType=auth/munge",
            f"StateSaveLocation={v / 'state'}",
            f"SlurmdSpoolDir={v / 'spool'}",
            f"SlurmctldPidFile={v / 'slurmctld.pid'}",
            f"SlurmdPidFile={v / 'slurmd.pid'}",
            f"SlurmctldLogFile={v / 'slurmctld.log'}",
            f"SlurmdLogFile={v / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={JOBCOMP_LOG}",
            "AccountingStorageType=accounting_storage/none",
            "ReturnToService=2",
            # Finished jobs stay visible to squeue/scontrol this long; after that the jobcomp log tells.
            "MinJobAge=600",
            f"NodeName=localhost CPUs={os.cpu_count() or 1} RealMemory={_real_memory_mb()} State=UNKNOWN",
            "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4",
            "",
        ]
    )


def _write_config():
    """Write slurm.conf if it differs; True when it changed."""
    text = config_text()
    try:
        if CONF.read_text() == text:
            return False
    except OSError:
        pass
    if os.geteuid() != 0:
        raise SlurmSetupError(f"{CONF} is missing or differs from what POMS needs, and only root may write it")
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(text)
    say(f"wrote {CONF} (state and logs under {VAR})")
    return True


def _daemon_env():
    # Called from a Django process, TZ is Django's TIME_ZONE; slurmctld must write the jobcomp
    # log in the host's zone, which is what the adapter assumes when it reads it back.
    return {k: v for k, v in os.environ.items() if k != "TZ"}


def _ctld_up():
    result = _run(["scontrol", "ping"], timeout=10, check=False)
    return result.returncode == 0 and "is UP" in result.stdout


def _slurmd_up():
    return subprocess.run(["pgrep", "-x", "slurmd"], capture_output=True).returncode == 0


def _node_state():
    result = _run(["sinfo", "-h", "-o", "%t"], timeout=10, check=False)
    return result.stdout.strip().rstrip("*~#!%$@^-") if result.returncode == 0 else ""


def _daemons_lost_their_directory():
    """True when running daemons work in a directory that was deleted under them (a checkout
    removed and cloned again at the same path): their spool and jobcomp log are gone too."""
    for name in ("slurmctld", "slurmd"):
        pids = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                if os.readlink(f"/proc/{pid}/cwd").endswith(" (deleted)") or not (VAR / "spool").is_dir():
                    return True
            except OSError:
                continue
    return False


def _wait_until_gone(check, what):
    for _ in range(100):
        if not check():
            return
        time.sleep(0.1)
    raise SlurmSetupError(f"{what} did not stop after `scontrol shutdown`")


def ensure_slurm():
    """Make sure a usable single-node Slurm cluster is running here; fast when it already is."""
    if not shutil.which("sbatch"):
        _install()
    _ensure_munge()
    stale = _daemons_lost_their_directory()
    for d in ("state", "spool"):
        (VAR / d).mkdir(parents=True, exist_ok=True)
    JOBCOMP_LOG.touch(exist_ok=True)
    changed = _write_config()
    if (changed or stale) and (_ctld_up() or _slurmd_up()):
        say("configuration or state directory changed: restarting slurmctld and slurmd")
        _run(["scontrol", "shutdown"], check=False)
        _wait_until_gone(_ctld_up, "slurmctld")
        _wait_until_gone(_slurmd_up, "slurmd")
    if not _ctld_up():
        say("starting slurmctld")
        _run(["slurmctld"], env=_daemon_env())
    if not _slurmd_up():
        say("starting slurmd")
        _run(["slurmd"], env=_daemon_env())
    deadline = time.monotonic() + WAIT_SECONDS
    state = ""
    resumed = False
    while time.monotonic() < deadline:
        state = _node_state()
        if state in READY_STATES:
            return
        if state in ("drain", "drng", "down") and not resumed and _slurmd_up():
            # A node left drained/down by an earlier run stays so until told otherwise.
            _run(["scontrol", "update", "NodeName=localhost", "State=RESUME"], check=False)
            resumed = True
        time.sleep(0.2)
    raise SlurmSetupError(
        f"the Slurm node is not usable after {WAIT_SECONDS}s (sinfo state {state or 'unknown'!r}); "
        f"see {VAR / 'slurmctld.log'} and {VAR / 'slurmd.log'}"
    )


def main(argv):
    if argv[1:] != ["up"]:
        print(f"usage: {argv[0]} up", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        ensure_slurm()
    except SlurmSetupError as exc:
        say(f"error: {exc}")
        return 1
    say(f"cluster ready ({time.monotonic() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
