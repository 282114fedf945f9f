"""The ssh runner: the launch runs as `ssh account@host` on a login host (DESIGN §6).

The remote side gets one `bash -c <script>` whose every part is already shell-quoted by
compose; the POMS variables travel as `export` lines because sshd drops client environment.
A launch that hangs or is aborted is killed on both ends: the local ssh process group, and
the remote process group whose id the script announces first (`== process_id: N ==`, as
POMS's abort_launch reads it).
"""

import re
import shlex
import socket

from django.conf import settings

from poms.lib import proc

PROCESS_ID = re.compile(r"^== process_id: (\d+) ==$", re.MULTILINE)
KILL_TIMEOUT = 30


def destination(target):
    """'ssh novapro@novagpvm01.fnal.gov:2222' → (['-p', '2222'], 'novapro@novagpvm01.fnal.gov')."""
    where = target.removeprefix("ssh ").strip()
    user, _, host = where.rpartition("@")
    host, _, port = host.partition(":")
    options = ["-p", port] if port else []
    return options, f"{user}@{host}" if user else host


def ssh_argv(target, remote_command):
    options, dest = destination(target)
    return [
        "ssh",
        "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={settings.POMS_SSH_CONNECT_TIMEOUT}",
        *settings.POMS_SSH_OPTIONS,
        *options,
        dest,
        remote_command,
    ]  # fmt: skip


def remote_script(plan, secrets):
    """The remote bash script, and what to write to its stdin: secrets travel there, one per
    line, never on a command line that `ps` shows on both hosts."""
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in plan.environment.items())
    for name, value in secrets.items():
        if "\n" in value or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
            raise ValueError(f"secret {name} cannot travel on a line of its own")
    reads = "".join(f"IFS= read -r {name} && export {name}\n" for name in secrets)
    # `exec 2>&1` keeps stderr in the launch log in order; the pid line lets us kill the group later.
    script = f'exec 2>&1\necho "== process_id: $$ =="\n{reads}{exports}{plan.script}'
    return script, "".join(f"{value}\n" for value in secrets.values())


def run(plan, *, log_path, timeout, should_stop=None, secrets=None):
    script, stdin = remote_script(plan, secrets or {})
    # `exec` makes the remote bash the session leader sshd created, so $$ is also its process group.
    argv = ssh_argv(plan.target, "exec bash -c " + shlex.quote(script))
    result = proc.run(argv, timeout=timeout, log_path=log_path, should_stop=should_stop, input=stdin)
    if result.timed_out or result.stopped:
        kill_remote(plan.target, log_path)
    return result


def kill_remote(target, log_path):
    """Kill the remote launch's process group, found from the pid line in its log."""
    found = PROCESS_ID.findall(open(log_path, errors="replace").read())
    if not found:
        return
    with open(log_path, "a") as log:
        log.write(f"== killing remote process group {found[0]} on {socket.gethostname()}'s behalf ==\n")
    proc.run(ssh_argv(target, f"kill -TERM -- -{int(found[0])}"), timeout=KILL_TIMEOUT, log_path=log_path)
