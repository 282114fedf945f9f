"""The ssh runner against a real OpenSSH server on loopback, started by the test."""

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from launches import services
from launches.compose import ComposeError, runner_target
from launches.runners.ssh import destination
from poms.permissions import actor_for
from submissions.models import Status

from .helpers import wait_for

pytestmark = pytest.mark.django_db
SSHD = "/usr/sbin/sshd"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """sshd on 127.0.0.1:<port> accepting a fresh key for the current user."""
    if not Path(SSHD).exists():
        if os.geteuid() == 0 and shutil.which("apt-get"):
            install = ["apt-get", "install", "-y", "-q", "openssh-server"]
            if subprocess.run(install, capture_output=True).returncode != 0:
                subprocess.run(["apt-get", "update", "-q"], capture_output=True)  # a fresh machine has no lists
                subprocess.run(install, check=True, capture_output=True)
        else:
            pytest.fail("the ssh runner test needs openssh-server (apt-get install openssh-server)")
    Path("/run/sshd").mkdir(exist_ok=True)
    home = tmp_path_factory.mktemp("sshd")
    for key in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / key)], check=True)
    (home / "authorized_keys").write_text((home / "user.pub").read_text())
    port = free_port()
    config = home / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {home / 'host'}\nPidFile {home / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {home / 'authorized_keys'}\nStrictModes no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\n"
    )
    server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
        assert time.monotonic() < deadline, "sshd did not start"
        time.sleep(0.1)
    options = ["-i", str(home / "user"), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR"]  # fmt: skip
    yield {"port": port, "options": options}
    server.terminate()
    server.wait()


@pytest.fixture
def ssh_stage(world, sshd, settings):
    settings.POMS_SSH_OPTIONS = sshd["options"]
    login = world.production_stage.login_setup
    login.launch_host, login.launch_account = f"127.0.0.1:{sshd['port']}", getpass.getuser()
    login.launch_setup = (
        f"export POMS_LOCAL_BATCH_ROOT={settings.POMS_LOCAL_BATCH_ROOT} DEMO_SLEEP=0 DEMO_FAIL_FRACTION=0"
    )
    login.save()
    return world.production_stage


def launch(world, stage, **kw):
    sub = services.launch_stage(stage, actor=actor_for(world.users["production"], world.experiment), **kw)
    services.run_launch(sub.pk)
    sub.refresh_from_db()
    return sub


def test_a_launch_runs_over_ssh_and_its_jobs_complete(world, ssh_stage):
    sub = launch(world, ssh_stage)
    log = open(sub.launch_log).read()
    assert sub.runner_target == f"ssh {getpass.getuser()}@127.0.0.1:{ssh_stage.login_setup.launch_host.split(':')[1]}"
    assert "== process_id:" in log and "Submitted local cluster" in log
    assert sub.batch_id

    def done():
        services.poll_batch_systems()
        sub.refresh_from_db()
        return sub.status == Status.COMPLETED

    wait_for(done, what="Completed")
    out = Path(sub.jobs.first().stdout_path).read_text()
    assert f"submission {sub.pk}" in out  # the POMS variables crossed the ssh hop


def test_nothing_typed_in_a_form_runs_on_the_login_host(world, ssh_stage, tmp_path):
    marker = tmp_path / "pwned"
    jt = ssh_stage.job_type
    jt.launch_script, jt.definition_parameters = "printf '%%s\\n'", [["", "%(dataset)s"]]
    jt.save()
    for evil in [f"x; touch {marker}", f"$(touch {marker})", f"`touch {marker}`", f"a'; touch {marker}; echo '"]:
        sub = launch(world, ssh_stage, dataset=evil)
        assert evil in open(sub.launch_log).read()
    assert not marker.exists()


def test_a_hanging_ssh_launch_is_killed_on_the_login_host_too(world, ssh_stage, settings, tmp_path):
    settings.POMS_LAUNCH_RUN_TIMEOUT = 2
    pidfile = tmp_path / "remote.pid"
    jt = ssh_stage.job_type
    jt.launch_script, jt.definition_parameters = f"sleep 300 & echo $! > {pidfile}; wait", []
    jt.save()
    sub = launch(world, ssh_stage)
    assert sub.status == Status.LAUNCH_FAILED and "timed out" in sub.history.last().cause
    remote = int(pidfile.read_text())
    wait_for(lambda: not Path(f"/proc/{remote}").exists() or "Z" in Path(f"/proc/{remote}/stat").read_text().split()[2],
             timeout=15, what="the remote sleep to be killed")  # fmt: skip


def test_host_and_account_are_validated_and_parsed():
    assert destination("ssh novapro@novagpvm01.fnal.gov:2222") == (["-p", "2222"], "novapro@novagpvm01.fnal.gov")
    assert destination("ssh novagpvm01.fnal.gov") == ([], "novagpvm01.fnal.gov")
    assert runner_target({"launch_host": "h.fnal.gov", "launch_account": "novapro"}) == "ssh novapro@h.fnal.gov"
    for host, account in [("-oProxyCommand=touch /tmp/x", ""), ("h;id", ""), ("h", "a b"), ("h", "-l")]:
        with pytest.raises(ComposeError):
            runner_target({"launch_host": host, "launch_account": account})


def test_the_callback_token_reaches_the_login_host_on_stdin_not_on_a_command_line(world, ssh_stage, monkeypatch):
    from launches.runners import ssh

    seen, real = {}, ssh.proc.run

    def spy(argv, **kwargs):
        seen.setdefault("argv", argv)
        seen.setdefault("input", kwargs.get("input"))
        return real(argv, **kwargs)

    monkeypatch.setattr(ssh.proc, "run", spy)
    jt = ssh_stage.job_type
    jt.launch_script, jt.definition_parameters = (
        'echo "token=$POMS_SUBMISSION_TOKEN"; tr "\\0" " " < /proc/$$/cmdline',
        [],
    )
    jt.save()
    sub = launch(world, ssh_stage)
    token = seen["input"].strip()
    assert token and token not in " ".join(seen["argv"])
    log = open(sub.launch_log).read()
    assert f"token={token}" in log  # the launch has it in its environment
    assert log.count(token) == 1  # and no command line the launch could see carried it
