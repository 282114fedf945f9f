"""Compose a launch exactly as POMS does (reference/poms.md §3.9–3.10), with shell quoting.

Input is a config dict (`campaigns.services.config_of`, or a frozen snapshot's content), so a
dry run and the real launch go through the same code.
"""

import re
import shlex
import socket
from dataclasses import dataclass, field

from django.conf import settings

SAFE_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*(:\d{1,5})?$")
SAFE_ACCOUNT = re.compile(r"^([a-z_][a-z0-9_.-]*)?$")
SAFE_KEY = re.compile(r"^[A-Za-z0-9_.:+/=,@ -]*$")


class ComposeError(ValueError):
    pass


class _Keywords(dict):
    """%-formatting mapping that shell-quotes what it substitutes, unless raw."""

    def __init__(self, values, *, quote):
        super().__init__(values)
        self.quote = quote

    def __getitem__(self, key):
        try:
            value = str(super().__getitem__(key))
        except KeyError:
            raise ComposeError(f"unknown keyword %({key})s; known: {', '.join(sorted(self))}") from None
        return shlex.quote(value) if self.quote else value


BARE_PERCENT = re.compile(r"%(?!\()")
KEYWORD = re.compile(r"%\([^)]*\)(\S?)")


def expand(template, keywords, *, quote):
    """`%(name)s` substitution with `%%` for a literal `%`.

    With `quote`, each substituted value is shell-quoted where it stands, so the template must
    not put a keyword inside quotes of its own: "…%(dataset)s…" would hand the shell the value's
    quotes as text and let $(…) in it run."""
    bare = template.replace("%%", "")
    if BARE_PERCENT.search(bare):
        # Python would format the whole keyword mapping into a bare %s: refuse instead.
        raise ComposeError(f"{template!r} has a % that is neither %(name)s nor %%; write %% for a literal %")
    for match in KEYWORD.finditer(bare):
        if match.group(1) != "s":  # %(x)r and the like would undo the quoting
            raise ComposeError(f"{template!r}: write keywords as %(name)s, not {match.group(0)!r}")
    if quote and (inside := _quoted_keyword(bare)):
        raise ComposeError(
            f"{template!r} puts {inside} inside quotes; POMS quotes substituted values itself, remove the quotes"
        )
    try:
        return template % _Keywords(keywords, quote=quote)
    except ComposeError:
        raise
    except (TypeError, ValueError) as exc:
        raise ComposeError(f"bad %-template {template!r}: {exc}") from None


def _quoted_keyword(text):
    """The first %(name)s that stands inside '…' or "…" in shell text, or None."""
    quote, i = None, 0
    while i < len(text):
        c = text[i]
        if c == "\\" and quote != "'":
            i += 2
            continue
        if quote is None and c in "'\"":
            quote = c
        elif c == quote:
            quote = None
        elif quote and text.startswith("%(", i):
            return KEYWORD.match(text, i).group(0)
        i += 1
    return None


def with_campaign_keywords(value, keywords):
    """A stage's dataset or software version with the campaign's keywords expanded, as POMS
    does before anything else (`mc_%(energy)s` → `mc_1GeV`)."""
    return expand(value, keywords, quote=False) if value and "%(" in value else value


def merge_overrides(*lists):
    """Ordered key/value pairs: a later duplicate key replaces the value, keeps the first position."""
    params = {}
    for pairs in lists:
        for pair in pairs or ():
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise ComposeError(f"an override must be a [key, value] pair, not {pair!r}")
            key, value = str(pair[0]), "" if pair[1] is None else str(pair[1])
            if not SAFE_KEY.match(key):
                raise ComposeError(f"override key {key!r} may only hold letters, digits, spaces and _.:+/=,@-")
            params[key] = value
    return params


@dataclass
class LaunchPlan:
    command: str
    setup: str
    environment: dict
    target: str
    dataset: str
    overrides: list = field(default_factory=list)

    @property
    def script(self):
        """The bash script the runner executes: the login setup, then the launch command."""
        return f"{self.setup}\n{self.command}\n" if self.setup else f"{self.command}\n"


def compose(config, *, dataset, test, overrides=(), launcher, submission_id=None, parent_id=None):
    stage, job_type, login = config["stage"], config["job_type"], config["login_setup"]
    campaign = config["campaign"]
    group = config["experiment"]
    campaign_keywords = campaign.get("keywords", {})
    dataset = with_campaign_keywords(dataset, campaign_keywords)
    fixed = {
        "dataset": dataset,
        "parameter": dataset,
        "version": with_campaign_keywords(stage.get("software_version", ""), campaign_keywords),
        "group": group,
        "experimenter": launcher,
        "experiment": config["experiment"],
    }
    keywords = {**campaign_keywords, **fixed}
    raw_keys = set(job_type.get("raw_keys") or ())

    params = merge_overrides(
        job_type.get("definition_parameters"),
        campaign.get("default_overrides") if stage.get("merge_overrides") else (),
        stage.get("param_overrides"),
        overrides,
        stage.get("test_param_overrides") if test else (),
        overrides,
    )
    parts = [expand(job_type["launch_script"], keywords, quote=True)]
    for key, value in params.items():
        if key in raw_keys:  # the template's own text goes in as written; substituted values stay quoted
            parts.append(key + expand(value, keywords, quote=True))
        else:
            expanded = expand(value, keywords, quote=False)
            parts.append(key + (shlex.quote(expanded) if expanded else ""))
    command = " ".join(p for p in parts if p)
    setup = expand(login.get("launch_setup") or "", fixed, quote=True)
    return LaunchPlan(
        command=command,
        setup=setup,
        environment=poms_environment(config, submission_id, parent_id, launcher, test),
        target=runner_target(login),
        dataset=dataset,
        overrides=[list(p) for p in overrides],
    )


def runner_target(login):
    """'ssh account@host[:port]' for a login host, 'local:<this host>' when there is none."""
    host = login.get("launch_host")
    if not host:
        return f"local:{socket.gethostname()}"
    if not SAFE_HOST.match(host) or not SAFE_ACCOUNT.match(login.get("launch_account") or ""):
        raise ComposeError(f"launch host {host!r} or account is not a valid host name / user name")
    account = login.get("launch_account")
    return f"ssh {account}@{host}" if account else f"ssh {host}"


def poms_environment(config, submission_id, parent_id, launcher, test):
    """The POMS variables every launch and job sees (reference/poms.md §3.8)."""
    stage, campaign = config["stage"], config["campaign"]
    sid = "" if submission_id is None else str(submission_id)
    return {
        "POMS4_CAMPAIGN_STAGE_ID": str(stage["id"]),
        "POMS4_CAMPAIGN_STAGE_NAME": stage["name"],
        "POMS4_CAMPAIGN_STAGE_TYPE": stage.get("stage_type", "regular"),
        "POMS4_CAMPAIGN_ID": str(campaign["id"]),
        "POMS4_CAMPAIGN_NAME": campaign["name"],
        "POMS4_SUBMISSION_ID": sid,
        "POMS4_TEST_LAUNCH": "True" if test else "False",
        "POMS_CAMPAIGN_ID": str(stage["id"]),
        "POMS_CAMPAIGN_NAME": f"{campaign['name']}__{stage['name']}",
        "POMS_PARENT_TASK_ID": "" if parent_id is None else str(parent_id),
        "POMS_TASK_ID": sid,
        "POMS_LAUNCHER": launcher,
        "POMS_TEST": "1" if test else "",
        "POMS_TASK_DEFINITION_ID": str(config["job_type"]["id"]),
        "JOBSUB_GROUP": config["experiment"],
        "GROUP": config["experiment"],
        "POMS_URL": settings.POMS_URL,
        "POMS_LOCAL_BATCH_ROOT": str(settings.POMS_LOCAL_BATCH_ROOT),
    }
