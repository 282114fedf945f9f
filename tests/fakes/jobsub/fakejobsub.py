"""Fake jobsub_lite commands for tests: faithful output, a tiny job table, knobs for failures.

Each executable beside this file (`jobsub_submit`, `jobsub_q`, `jobsub_history`, `jobsub_hold`,
`jobsub_release`, `jobsub_rm`, `jobsub_fetchlog`, `fake_jobsub_set`) is a stub calling `main()`.
They share one job table, `$FAKE_JOBSUB_STATE/state.json` (serialised by a lock file), holding
HTCondor-like job ClassAds in a queue and a history, per schedd.

What they print follows jobsub_lite (fermitools/jobsub_lite: lib/condor.py, lib/mains/cmd.py,
lib/mains/fetchlog.py, lib/get_parser.py, bin/jobsub_cmd, bin/jobsub_history, bin/jobsub_totals)
and the HTCondor tools it wraps; each printer says where its format comes from.

Knobs (environment):
  FAKE_JOBSUB_STATE            directory of the job table (required)
  FAKE_JOBSUB_SCHEDD           the schedd jobsub_submit picks (default jobsub01.fnal.gov)
  FAKE_JOBSUB_FAIL             comma list of <command>:<mode>, modes:
                                 error        jobsub's own failure (credentials, collector): exit 1
                                 garbled      the answer is cut short (a dropped connection): exit 0
                                 hang         never returns (for timeouts)
                                 schedd_down  condor_q/condor_history could not reach the schedd
  FAKE_JOBSUB_NO_POMS_WRAPPER  =1: don't copy the POMS variables into ClassAds (no poms wrapper)
Every call is appended to $FAKE_JOBSUB_STATE/calls.jsonl, so tests can count them.
"""

import argparse
import contextlib
import fcntl
import io
import json
import os
import re
import sys
import tarfile
import time
import uuid

DEFAULT_SCHEDD = "jobsub01.fnal.gov"
FIRST_CLUSTER = 70001001
HIGHLIGHT = f"\n{'=-' * 30}\n\n"  # lib/condor.py: `hl`, the line around "Use job id"
# What the POMS jobsub wrapper copies into ClassAds (jobsub_lite lib/poms_wrap.py, poms.md §3.12).
POMS_VARIABLES = (
    "POMS_TASK_ID",
    "POMS_CAMPAIGN_ID",
    "POMS_LAUNCHER",
    "POMS_CAMPAIGN_NAME",
    "POMS4_CAMPAIGN_STAGE_ID",
    "POMS4_CAMPAIGN_STAGE_NAME",
    "POMS4_CAMPAIGN_STAGE_TYPE",
    "POMS4_CAMPAIGN_ID",
    "POMS4_CAMPAIGN_NAME",
    "POMS4_SUBMISSION_ID",
    "POMS4_CAMPAIGN_TYPE",
    "POMS4_TEST_LAUNCH",
)
FINAL = (3, 4)  # Removed, Completed: the job leaves the queue for the history


# ---------------------------------------------------------------------------------------------
# The job table


def _state_dir():
    path = os.environ.get("FAKE_JOBSUB_STATE")
    if not path:
        sys.exit("fake jobsub: FAKE_JOBSUB_STATE is not set")
    os.makedirs(path, exist_ok=True)
    return path


@contextlib.contextmanager
def job_table():
    """The table, locked for the whole command so concurrent fakes see each other's changes."""
    root = _state_dir()
    with open(os.path.join(root, "state.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = os.path.join(root, "state.json")
        try:
            with open(path) as f:
                table = json.load(f)
        except FileNotFoundError:
            table = {"next_cluster": {}, "queue": [], "history": []}
        yield table
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(table, f, indent=1)
        os.replace(tmp, path)


def schedd_of(ad):
    return ad["GlobalJobId"].split("#")[0]


def job_id_of(ad):
    return f"{ad['ClusterId']}.{ad['ProcId']}@{schedd_of(ad)}"


def known_schedds(table):
    # jobsub asks the collector for every jobsub_lite schedd; here: every schedd ever used.
    return sorted(set(table["next_cluster"]) | {os.environ.get("FAKE_JOBSUB_SCHEDD", DEFAULT_SCHEDD)})


def move_finished_to_history(table):
    """A completed or removed job leaves the queue; only condor_history still knows it."""
    for ad in [a for a in table["queue"] if a["JobStatus"] in FINAL]:
        table["queue"].remove(ad)
        table["history"].append(ad)


def parse_value(text):
    """A ClassAd literal as written in `-l +Attr=value` lines or fake_jobsub_set arguments."""
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d*(e-?\d+)?", text, re.IGNORECASE):
        return float(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return bytes(text[1:-1], "utf-8").decode("unicode_escape")
    return text


# ---------------------------------------------------------------------------------------------
# A small ClassAd expression evaluator, for -constraint (condor_q, condor_history, condor_rm, …)

_UNDEF, _ERROR = object(), object()
_TOKEN = re.compile(
    r'\s*(?:(?P<num>\d+\.\d*|\d+)|(?P<str>"(?:[^"\\]|\\.)*")'
    r"|(?P<op>=\?=|=!=|==|!=|<=|>=|&&|\|\||[<>!(),{}])|(?P<name>[A-Za-z_][A-Za-z0-9_.]*))"
)


class ConstraintError(ValueError):
    pass


def _tokens(text):
    pos, out = 0, []
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            raise ConstraintError(f"unexpected {text[pos : pos + 10]!r}")
        pos = m.end()
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
    return out


class _Parser:
    """Recursive descent over: or → and → comparison → unary → atom (literal, attribute,
    (expr), {list}, member(x, list))."""

    def __init__(self, text):
        self.toks, self.i = _tokens(text), 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def take(self, value=None):
        tok = self.peek()
        if tok[0] is None or (value is not None and tok[1] != value):
            raise ConstraintError(f"expected {value or 'more'}, found {tok[1]!r}")
        self.i += 1
        return tok

    def parse(self):
        node = self.or_()
        if self.peek()[0] is not None:
            raise ConstraintError(f"unexpected {self.peek()[1]!r}")
        return node

    def or_(self):
        node = self.and_()
        while self.peek()[1] == "||":
            self.take()
            node = ("||", node, self.and_())
        return node

    def and_(self):
        node = self.cmp()
        while self.peek()[1] == "&&":
            self.take()
            node = ("&&", node, self.cmp())
        return node

    def cmp(self):
        node = self.unary()
        if self.peek()[1] in ("==", "!=", "=?=", "=!=", "<", "<=", ">", ">="):
            op = self.take()[1]
            node = (op, node, self.unary())
        return node

    def unary(self):
        if self.peek()[1] == "!":
            self.take()
            return ("!", self.unary())
        return self.atom()

    def atom(self):
        kind, value = self.take()
        if kind == "num":
            return ("lit", float(value) if "." in value else int(value))
        if kind == "str":
            return ("lit", bytes(value[1:-1], "utf-8").decode("unicode_escape"))
        if value == "(":
            node = self.or_()
            self.take(")")
            return node
        if value == "{":
            items = []
            while self.peek()[1] != "}":
                items.append(self.or_())
                if self.peek()[1] == ",":
                    self.take()
            self.take("}")
            return ("list", items)
        if kind == "name":
            low = value.lower()
            if low in ("true", "false"):
                return ("lit", low == "true")
            if low == "undefined":
                return ("lit", _UNDEF)
            if self.peek()[1] == "(":
                self.take()
                args = [] if self.peek()[1] == ")" else [self.or_()]
                while self.peek()[1] == ",":
                    self.take()
                    args.append(self.or_())
                self.take(")")
                return ("call", low, args)
            return ("attr", value.split(".")[-1] if low.startswith(("my.", "target.")) else value)
        raise ConstraintError(f"unexpected {value!r}")


def _lookup(ad, name):
    for key, value in ad.items():
        if key.lower() == name.lower():
            return value
    return _UNDEF


def _is_num(v):
    return isinstance(v, int | float) and not isinstance(v, bool)


def _compare(op, a, b):
    if op in ("=?=", "=!="):
        same = (_is_num(a) and _is_num(b) and a == b) or (type(a) is type(b) and a == b) or (a is b)
        return same if op == "=?=" else not same
    if a is _UNDEF or b is _UNDEF:
        return _UNDEF
    if a is _ERROR or b is _ERROR:
        return _ERROR
    if isinstance(a, str) and isinstance(b, str):  # ClassAd == on strings ignores case
        a, b = a.lower(), b.lower()
    elif not ((_is_num(a) and _is_num(b)) or (isinstance(a, bool) and isinstance(b, bool))):
        return _ERROR
    return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _eval(node, ad):
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "attr":
        return _lookup(ad, node[1])
    if kind == "list":
        return [_eval(n, ad) for n in node[1]]
    if kind == "call":
        args = [_eval(n, ad) for n in node[2]]
        if node[1] == "member" and len(args) == 2 and isinstance(args[1], list):
            if args[0] is _UNDEF:
                return _UNDEF
            return any(_compare("==", args[0], x) is True for x in args[1])
        if node[1] == "isundefined" and len(args) == 1:
            return args[0] is _UNDEF
        return _ERROR
    if kind == "!":
        v = _eval(node[1], ad)
        return (not v) if isinstance(v, bool) else v
    if kind in ("&&", "||"):
        a = _eval(node[1], ad)
        short = kind == "||"
        if a is short:
            return short
        b = _eval(node[2], ad)
        if b is short:
            return short
        if a is (not short) and b is (not short):
            return not short
        return _ERROR if _ERROR in (a, b) else _UNDEF
    return _compare(kind, _eval(node[1], ad), _eval(node[2], ad))


def matcher(constraints):
    trees = [_Parser(c).parse() for c in constraints]
    return lambda ad: all(_eval(t, ad) is True for t in trees)


# ---------------------------------------------------------------------------------------------
# Printers


def unparse_json(ads):
    """condor_q/condor_history -json: `[` then the ads, `,` on its own line between them, `]`; nothing
    at all when no ad matched (HTCondor's ClassAd list writer). Attributes sorted ignoring case, two
    spaces of indent (ClassAdJsonUnParser)."""
    if not ads:
        return ""
    blocks = []
    for ad in ads:
        lines = [f'  "{k}": {json.dumps(ad[k])}' for k in sorted(ad, key=str.lower)]
        blocks.append("{\n" + ",\n".join(lines) + "\n}")
    return "[\n" + "\n,\n".join(blocks) + "\n]\n"


def _classad_literal(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def unparse_long(ads):
    """-long: `Attr = value` lines, a blank line after each ad."""
    return "".join(
        "".join(f"{k} = {_classad_literal(ad[k])}\n" for k in sorted(ad, key=str.lower)) + "\n" for ad in ads
    )


def _mmdd(t):
    return time.strftime("%m/%d %H:%M", time.localtime(t)) if t else ""


def _runtime(seconds):
    """condor -format %T: D+HH:MM:SS."""
    s = int(seconds)
    return f"{s // 86400}+{s % 86400 // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def jobsub_q_default(ads, now):
    """jobsub_q's default table (lib/mains/cmd.py format list, piped through `sort -k 3,4` and
    bin/jobsub_totals)."""
    header = "JOBSUBJOBID                             OWNER       \tSUBMITTED     RUNTIME   ST PRIO   SIZE  COMMAND\n"
    rows = []
    for ad in sorted(ads, key=lambda a: (_mmdd(a["QDate"]), a["ClusterId"], a["ProcId"])):
        wall = ad.get("RemoteWallClockTime", 0.0)
        if ad["JobStatus"] == 2:
            wall += now - ad.get("ShadowBday", now)
        status = "UIRXCHE"[ad["JobStatus"]] if ad["JobStatus"] < 7 else ""
        owner = f" |-{ad['DAGNodeName']}" if ad.get("DAGNodeName") else ad["Owner"]
        row = (
            f"{job_id_of(ad):<40}{owner:<10}\t{_mmdd(ad['QDate']):<11} {_runtime(wall)}  {status}  {ad['JobPrio']:3d} "
        )
        row += f"{ad.get('ImageSize', 0) / 1024.0:6.1f} {ad.get('JobsubCmd') or ad.get('Cmd', '')}"
        if ad.get("Arguments"):
            row += f" {ad['Arguments'][:20]}"
        rows.append(row + "\n")
    counts = {k: 0 for k in "TCXIRHS"}
    for row in rows:
        words = re.split(r"\s+", row)
        if len(words) > 5 and words[5] in counts:
            counts[words[5]] += 1
        counts["T"] += 1
    totals = "{T} total; {C} completed, {X} removed, {I} idle, {R} running, {H} held, {S} suspended\n"
    return header + "".join(rows) + totals.format(**counts)


def jobsub_history_default(ads):
    """bin/jobsub_history's header and -format list."""
    out = "JOBSUBJOBID                             OWNER                SUBMITTED           FINISHED            ST"
    out += "       CMD\n"
    for ad in ads:
        out += f"{job_id_of(ad):<30}{ad['Owner']:<10}\t{_mmdd(ad['QDate']):<11} {_mmdd(ad.get('CompletionDate')):<11} "
        out += f" {'UIRXCHE'[ad['JobStatus']]} {ad.get('JobsubCmd', '')}"
        out += f" {ad['Args'][:20]}\n" if ad.get("Args") else "\n"
    return out


# ---------------------------------------------------------------------------------------------
# Shared command-line handling


def log_call(name, argv):
    with open(os.path.join(_state_dir(), "calls.jsonl"), "a") as f:
        f.write(json.dumps({"cmd": name, "args": argv}) + "\n")


def failure_for(name):
    for item in os.environ.get("FAKE_JOBSUB_FAIL", "").split(","):
        cmd, _, mode = item.strip().partition(":")
        if cmd == name:
            return mode
    return None


def jobsub_error(exc_class, message):
    """bin/jobsub_cmd (and every jobsub_* main): `\\n\\nError: <class>: <message>\\n\\n`, exit 1."""
    sys.stderr.write(f"\n\nError: {exc_class}: {message}\n\n")
    sys.exit(1)


def hang():
    time.sleep(3600)
    sys.exit(1)


def base_parser():
    """lib/get_parser.py get_base_parser/get_jobid_parser: -G also from $JOBSUB_GROUP or $GROUP."""
    if os.environ.get("JOBSUB_GROUP"):
        os.environ["GROUP"] = os.environ["JOBSUB_GROUP"]
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-G", "--group", default=os.environ.get("GROUP"))
    parser.add_argument("--role")
    parser.add_argument("--subgroup")
    parser.add_argument("--global-pool", default="")
    parser.add_argument("--verbose", type=int, default=0)
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--devserver", action="store_true")
    parser.add_argument("--auth-methods", default="token")
    return parser


def require_group(args):
    if not args.group:
        # A SystemExit with this text (lib/mains/cmd.py): Python prints it to stderr, exit 1.
        sys.exit(f"{sys.argv[0]} needs -G group or $GROUP in the environment.")


def condor_args(args, passthru, *, constraint=True):
    """lib/mains/cmd.py jobsub_cmd_args: --jobid ids and `<id>@<schedd>` arguments pick schedds
    (the id part goes to that schedd's condor command), `--opt` becomes `-opt`, --constraint
    becomes `-constraint`; returns (schedds or None for all, args for every schedd, ids by schedd)."""
    if args.jobid:
        passthru += args.jobid.split(",")
    if getattr(args, "user", None):
        passthru.append(args.user)
    if constraint and args.constraint:
        passthru += ["-constraint", args.constraint]
    schedds, common, ids = set(), [], {}
    if args.name:
        schedds.add(args.name)
    for arg in passthru:
        m = re.match(r"([\d.]*)@([\w.]+)", arg)
        if m:
            schedds.add(m.group(2))
            if m.group(1):
                ids.setdefault(m.group(2), []).append(m.group(1).strip("."))
            continue
        common.append(arg[1:] if arg.startswith("--") else arg)
    return (sorted(schedds) or None), common, ids


def condor_selection(condor_argv, ids, *, query):
    """What a condor tool's arguments select: (flags, match function, description of each part)."""
    flags, constraints, owners, attributes = set(), [], [], None
    it = iter(condor_argv)
    for arg in it:
        if arg == "-constraint":
            constraints.append(next(it, "true"))
        elif arg in ("-attributes", "-af", "-autoformat"):
            attributes = next(it, "").split(",")
        elif arg.startswith("-"):
            flags.add(arg)
        elif not re.fullmatch(r"\d+(\.\d+)?", arg):
            owners.append(arg)
    for owner in owners:
        constraints.append(f'Owner == "{owner}"')
    id_terms = []
    for job in ids:
        cluster, _, proc = job.partition(".")
        id_terms.append(f"(ClusterId == {cluster}" + (f" && ProcId == {proc})" if proc else ")"))
    if query and not (flags & {"-allusers", "-all"}) and not owners and not id_terms:
        # condor_q shows only the caller's jobs unless told otherwise.
        constraints.append(f'Owner == "{os.environ.get("USER", "poms")}"')
    if id_terms:
        constraints.append(" || ".join(id_terms))
    return flags, matcher(constraints), attributes


def project(ads, attributes):
    if not attributes:
        return ads
    return [{k: ad[k] for k in ad if k in attributes} for ad in ads]


def parse_jobid_args(argv, *, q):
    parser = base_parser()
    parser.add_argument("-J", "--jobid")
    parser.add_argument("--constraint")
    parser.add_argument("-name")
    parser.add_argument("--jobsub_server")
    if q:
        parser.add_argument("--user")
    args, passthru = parser.parse_known_args(argv)
    require_group(args)
    return args, passthru


# ---------------------------------------------------------------------------------------------
# The commands


def cmd_submit(argv):
    parser = base_parser()
    parser.add_argument("-N", type=int, default=1)
    parser.add_argument("-l", "--lines", action="append", default=[])
    parser.add_argument("-e", "--environment", action="append", default=[])
    parser.add_argument("--memory", default="2GB")
    parser.add_argument("--disk", default="10GB")
    parser.add_argument("--cpu", default="1")
    parser.add_argument("--expected-lifetime", default="8h")
    parser.add_argument("--job-info", action="append", default=[])
    parser.add_argument("executable", nargs="?")
    parser.add_argument("exe_arguments", nargs=argparse.REMAINDER)
    args, _unknown = parser.parse_known_args(argv)  # the real one knows ~60 more options
    require_group(args)
    if not args.executable or not args.executable.startswith("file://"):
        jobsub_error("TypeError", "executable must start with file://")
    schedd = os.environ.get("FAKE_JOBSUB_SCHEDD", DEFAULT_SCHEDD)
    mode = failure_for("jobsub_submit")
    if mode == "hang":
        hang()
    if mode == "error":
        # condor_submit's own complaint, then jobsub's highlighted summary (lib/condor.py submit()).
        # jobsub_submit still exits 0 here: submit()'s None result is ignored by its callers, so a
        # caller must look for the job id, not at the exit status.
        sys.stdout.write("Submitting job(s)\n")
        sys.stderr.write(f"\nERROR: Failed to connect to queue manager {schedd}\nAUTHENTICATE:1003:Failed to ")
        sys.stderr.write("authenticate with any method\n")
        sys.stderr.write(f"{HIGHLIGHT}Error: condor_submit exited with failed status code 1\n\n{HIGHLIGHT}\n")
        return 0
    lines = args.lines + [x for x in os.environ.get("JOBSUB_EXTRA_LINES", "").split(",") if x]
    extra = {}
    for line in lines:
        m = re.match(r"\s*\+(\w+)\s*=\s*(.*)$", line)
        if m:
            extra[m.group(1)] = parse_value(m.group(2))
    if os.environ.get("POMS_TASK_ID") and os.environ.get("FAKE_JOBSUB_NO_POMS_WRAPPER") != "1":
        for var in POMS_VARIABLES:
            if os.environ.get(var, "") != "":
                extra[var] = parse_value(os.environ[var])
        extra["FIFE_CATEGORIES"] = f"POMS_TASK_ID_{os.environ['POMS_TASK_ID']},POMS_CAMPAIGN_ID_" + os.environ.get(
            "POMS_CAMPAIGN_ID", ""
        )
    user = os.environ.get("USER", "poms")
    exe = os.path.basename(args.executable[len("file://") :])
    now = int(time.time())
    stamp = time.strftime("%Y_%m_%d_%H%M%S", time.localtime(now))
    token = str(uuid.uuid4())
    with job_table() as table:
        cluster = table["next_cluster"].get(schedd, FIRST_CLUSTER)
        table["next_cluster"][schedd] = cluster + 1
        for proc in range(args.N):
            filebase = f"{exe}_{stamp}_{token}cluster.{cluster}.{proc}"
            ad = {
                "AccountingGroup": f"group_{args.group}.{user}",
                "Arguments": " ".join(args.exe_arguments),
                "Cmd": f"/home/{user}/.cache/jobsub_lite/js_{stamp}_{token}/simple.sh",
                "ClusterId": cluster,
                "CompletionDate": 0,
                "EnteredCurrentStatus": now,
                "Err": f"{filebase}.err",
                "GlobalJobId": f"{schedd}#{cluster}.{proc}#{now}",
                "ImageSize": 1,
                "JobPrio": 0,
                "JobRunCount": 0,
                "JobStatus": 1,
                "JobUniverse": 5,
                "Jobsub_Group": args.group,
                "JobsubCmd": exe,
                "JobsubJobId": f"{cluster}.{proc}@{schedd}",
                "NumJobStarts": 0,
                "Out": f"{filebase}.out",
                "Owner": user,
                "ProcId": proc,
                "QDate": now,
                "RemoteSysCpu": 0.0,
                "RemoteUserCpu": 0.0,
                "RemoteWallClockTime": 0.0,
                "RequestCpus": int(args.cpu),
                "UserLog": f"{filebase}.log",
                **extra,
            }
            table["queue"].append(ad)
    # condor_submit's stdout (one dot per job), then jobsub's highlighted job id (lib/condor.py).
    sys.stdout.write(f"Submitting job(s){'.' * args.N}\n{args.N} job(s) submitted to cluster {cluster}.\n")
    print(f"{HIGHLIGHT}Use job id {cluster}.0@{schedd} to retrieve output{HIGHLIGHT}")
    return 0


def _answer(name, text):
    """Print a query's answer, or what an injected failure makes of it."""
    mode = failure_for(name)
    if mode == "garbled":
        sys.stdout.write(text[: len(text) // 2] if len(text) > 20 else '[\n{\n  "ClusterId": 7000')
    elif mode == "schedd_down":
        schedd = os.environ.get("FAKE_JOBSUB_SCHEDD", DEFAULT_SCHEDD)
        sys.stderr.write(
            f"\n-- Failed to fetch ads from: <131.225.240.146:9618?addrs=131.225.240.146-9618&alias={schedd}> : "
            f"{schedd}\nSECMAN:2007:Failed to end classad message.\n"
        )
    else:
        sys.stdout.write(text)
    return 0


def _query(name, argv, *, history):
    args, passthru = parse_jobid_args(argv, q=not history)
    mode = failure_for(name)
    if mode == "hang":
        hang()
    if mode == "error":
        jobsub_error("HTCondorIOError", "Failed communication with collector.")
    # bin/jobsub_history parses --constraint but never passes it on to condor_history: only the
    # condor spelling `-constraint` (which argparse leaves in the pass-through list) filters there.
    schedds, common, ids = condor_args(args, passthru, constraint=not history)
    flags = set(common)
    formatted = flags & {"-autoformat", "-af", "-batch", "-better-analyze", "-dag", "-format", "-hold", "-io"}
    formatted |= flags & {"-json", "-long", "-nobatch", "-xml"}
    if not history and not (flags & {"-allusers", "-constraint"} or any(a[:1].isalnum() for a in common) or ids):
        # jobsub_q's default: the group's jobs, all users (lib/mains/cmd.py).
        common += ["-allusers", "-constraint", f'Jobsub_Group=?="{args.group}"']
    now = int(time.time())
    chunks = []
    with job_table() as table:
        pool = table["history"][::-1] if history else table["queue"]  # condor_history -backwards
        for schedd in schedds or known_schedds(table):
            try:
                _flags, match, attributes = condor_selection(common, ids.get(schedd, []), query=not history)
            except ConstraintError as exc:
                sys.stderr.write(f"Error: Invalid constraint expression: {exc}\n")
                return 0
            chunks.append((attributes, [ad for ad in pool if schedd_of(ad) == schedd and match(ad)]))
    # One condor command per schedd; jobsub relays each one's output in turn.
    if "-json" in flags:
        text = "".join(unparse_json(project(ads, attributes)) for attributes, ads in chunks)
    elif "-long" in flags:
        text = "".join(unparse_long(project(ads, attributes)) for attributes, ads in chunks)
    elif formatted:
        sys.stderr.write(f"fake jobsub: {' '.join(sorted(formatted))} is not imitated\n")
        return 1
    else:
        every = [ad for _attributes, ads in chunks for ad in ads]
        text = jobsub_history_default(every) if history else jobsub_q_default(every, now)
    return _answer(name, text)


_ACTIONS = {
    # mode: (present tense, past tense, states it acts on, new status)
    "jobsub_hold": ("hold", "held", (1, 2, 6, 7), 5),
    "jobsub_release": ("release", "released", (5,), 1),
    "jobsub_rm": ("remove", "marked for removal", (1, 2, 5, 6, 7), 3),
}


def _act(ad, name, user, now):
    verb = {"jobsub_hold": "condor_hold", "jobsub_release": "condor_release", "jobsub_rm": "condor_rm"}[name]
    new = _ACTIONS[name][3]
    previous = ad["JobStatus"]
    if previous == 2:
        _stop_running(ad, now)
    ad["LastJobStatus"], ad["JobStatus"], ad["EnteredCurrentStatus"] = previous, new, now
    reason = f"via {verb} (by user {user})"
    if new == 5:
        ad.update(HoldReason=reason, HoldReasonCode=1, HoldReasonSubCode=0)
    elif new == 1:  # a released job goes back to Idle and must be matched again
        ad["LastHoldReason"] = ad.pop("HoldReason", "")
        ad["ReleaseReason"] = reason
        ad.pop("HoldReasonCode", None)
        ad.pop("HoldReasonSubCode", None)
    else:
        ad["RemoveReason"] = reason


def _control(name, argv):
    args, passthru = parse_jobid_args(argv, q=False)
    mode = failure_for(name)
    if mode == "hang":
        hang()
    if mode == "error":
        jobsub_error("HTCondorIOError", "Failed communication with collector.")
    schedds, common, ids = condor_args(args, passthru)
    present, past, acts_on, _new = _ACTIONS[name]
    user, now = os.environ.get("USER", "poms"), int(time.time())
    constraints = []
    it = iter(common)
    for arg in it:
        if arg == "-constraint":
            constraints.append(next(it, "true"))
    out, err = [], []
    with job_table() as table:
        for schedd in schedds or known_schedds(table):
            queue = [ad for ad in table["queue"] if schedd_of(ad) == schedd]
            # HTCondor's tool.cpp messages, per schedd; jobsub_cmd relays them and exits 0 regardless.
            if constraints:
                expr = "(" + ") && (".join(constraints) + ")"
                try:
                    hits = [ad for ad in queue if matcher(constraints)(ad) and ad["JobStatus"] in acts_on]
                except ConstraintError:
                    hits = []
                for ad in hits:
                    _act(ad, name, user, now)
                if hits:
                    out.append(f"All jobs matching constraint {expr} have been {past}\n")
                else:
                    err.append(f"\nCouldn't find/{present} all jobs matching constraint {expr}\n")
            for job in ids.get(schedd, []):
                cluster, _, proc = job.partition(".")
                hits = [
                    ad
                    for ad in queue
                    if str(ad["ClusterId"]) == cluster and (not proc or str(ad["ProcId"]) == proc)
                    if ad["JobStatus"] in acts_on
                ]
                for ad in hits:
                    _act(ad, name, user, now)
                what = f"job {cluster}.{proc}" if proc else f"all jobs in cluster {cluster}"
                if hits:
                    out.append(
                        f"Job {cluster}.{proc} {past}\n"
                        if proc
                        else f"All jobs in cluster {cluster} have been {past}\n"
                    )
                else:
                    err.append(f"\nCouldn't find/{present} {what}.\n")
        move_finished_to_history(table)
    sys.stdout.write("".join(out))
    sys.stderr.write("".join(err))
    return 0


def _sandbox(ad, schedd):
    """What the job's log archive holds: the submit files and the job's out/err/log."""
    jid = job_id_of(ad)
    files = {
        "simple.cmd": "# generated by jobsub_lite\nexecutable = simple.sh\nqueue 1\n",
        "simple.sh": "#!/bin/bash\n# jobsub_lite wrapper\n",
        ad["Out"]: f"fake job output of {jid}\n",
        ad["Err"]: "",
        ad["UserLog"]: f"000 ({ad['ClusterId']:03d}.{ad['ProcId']:03d}.000) Job submitted from host: <{schedd}>\n...\n",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def cmd_fetchlog(argv):
    parser = base_parser()
    parser.add_argument("-J", "--jobid")
    parser.add_argument("--constraint")
    parser.add_argument("--destdir", "--dest-dir", "--unzipdir")
    parser.add_argument("--archive-format", default="tar")
    parser.add_argument("--partial", action="store_true")
    parser.add_argument("--condor", action="store_true")
    parser.add_argument("job_id", nargs="?")
    args = parser.parse_args(argv)
    mode = failure_for("jobsub_fetchlog")
    if mode == "hang":
        hang()
    if mode == "error":
        jobsub_error("HTCondorIOError", "Failed communication with collector.")
    jobid = args.jobid or args.job_id
    if not jobid:
        sys.exit("jobid is required.")
    jobid = jobid.replace(".@", "@")  # lib/mains/fetchlog.py: 1234.@schedd is normalised
    require_group(args)
    if not args.condor and "JOBSUB_FETCHLOG_URL" not in os.environ:
        jobsub_error(
            "Exception",
            "JOBSUB_FETCHLOG_URL not set in the environment. You may still be able to download with --condor",
        )
    with job_table() as table:
        # A cluster id stands for its first job here (as condor.Job reads `<cluster>@<schedd>`).
        wanted = re.sub(r"^(\d+)@", r"\1.0@", jobid)
        found = [ad for ad in table["queue"] + table["history"] if job_id_of(ad) == wanted]
    url = f"{os.environ.get('JOBSUB_FETCHLOG_URL', '')}/job/{jobid}.tar.gz"
    if not found:
        print(f"Got error from landscape:\nno logs for job {jobid}")
        jobsub_error("HTTPError", f"404 Client Error: Not Found for url: {url}")
    archive = _sandbox(found[0], schedd_of(found[0]))
    destdir = args.destdir or os.getcwd()
    os.makedirs(destdir, mode=0o750, exist_ok=True)
    target = os.path.join(destdir, f"{jobid}.tgz")
    with open(target, "wb") as f:
        f.write(archive)
    if args.destdir:  # with --destdir the archive is unpacked there and removed
        with tarfile.open(target) as tar:
            tar.extractall(destdir, filter="data")
        os.unlink(target)
    return 0


def _stop_running(ad, now):
    """A job leaving a slot: its run time is added to RemoteWallClockTime, RemoteHost goes."""
    ran = now - ad.get("JobCurrentStartDate", now)
    ad["RemoteWallClockTime"] = float(ad.get("RemoteWallClockTime", 0.0) + ran)
    ad["RemoteUserCpu"] = float(ad.get("RemoteUserCpu", 0.0) + round(ran * 0.9))
    if "RemoteHost" in ad:
        ad["LastRemoteHost"] = ad.pop("RemoteHost")


def set_status(ad, new, now):
    """What the schedd does when a job changes state."""
    previous = ad["JobStatus"]
    if previous == 2 and new != 2:
        _stop_running(ad, now)
    if new == 2:
        ad.setdefault("JobStartDate", now)
        ad["JobCurrentStartDate"] = ad["ShadowBday"] = now
        ad["NumJobStarts"] = ad.get("NumJobStarts", 0) + 1
        ad["JobRunCount"] = ad.get("JobRunCount", 0) + 1
        ad["RemoteHost"] = f"slot1_{ad['ProcId'] + 1}@fnpc{9000 + ad['ProcId']}.fnal.gov"
        ad["MATCH_EXP_JOB_GLIDEIN_Site"] = "FermiGrid"
        ad["ResidentSetSize_RAW"] = 524288
    if new == 4:
        ad["CompletionDate"] = now
        ad.setdefault("ExitCode", 0)
        ad["ExitBySignal"] = False
    if new == 5:
        ad.setdefault("HoldReason", "Job has gone over memory limit of 2048 megabytes.")
        ad.setdefault("HoldReasonCode", 34)
    if new == 3:
        ad.setdefault("RemoveReason", "via condor_rm (by user poms)")
    ad["LastJobStatus"], ad["JobStatus"], ad["EnteredCurrentStatus"] = previous, new, now


def cmd_set(argv):
    """fake_jobsub_set JOBID... ATTR=VALUE...

    Change queued jobs as the schedd would: JOBID is <cluster>.<proc>@<schedd>, or <cluster>@<schedd>
    for every job of the cluster still queued. JobStatus=2 starts a job (start dates, RemoteHost),
    JobStatus=4 completes it (CompletionDate, ExitCode default 0, wall time) and JobStatus=3 removes
    it; both move it to the history. Other ATTR=VALUE pairs are set as given, after that bookkeeping
    (e.g. ExitCode=3, RemoteWallClockTime=3600.0, HoldReason="…").
    """
    jobs = [a for a in argv if "@" in a and "=" not in a]
    assignments = dict(a.split("=", 1) for a in argv if "=" in a)
    if not jobs or not assignments:
        sys.exit(cmd_set.__doc__)
    now = int(time.time())
    changed = []
    with job_table() as table:
        for ad in table["queue"]:
            if not any(job_id_of(ad) == j or f"{ad['ClusterId']}@{schedd_of(ad)}" == j for j in jobs):
                continue
            values = {k: parse_value(v) for k, v in assignments.items()}
            if "JobStatus" in values:
                if "ExitCode" in values:
                    ad["ExitCode"] = values["ExitCode"]
                set_status(ad, values.pop("JobStatus"), now)
            ad.update(values)
            changed.append(job_id_of(ad))
        move_finished_to_history(table)
    if not changed:
        sys.exit(f"fake_jobsub_set: no queued job matches {' '.join(jobs)}")
    print("\n".join(changed))
    return 0


COMMANDS = {
    "jobsub_submit": cmd_submit,
    "jobsub_q": lambda argv: _query("jobsub_q", argv, history=False),
    "jobsub_history": lambda argv: _query("jobsub_history", argv, history=True),
    "jobsub_hold": lambda argv: _control("jobsub_hold", argv),
    "jobsub_release": lambda argv: _control("jobsub_release", argv),
    "jobsub_rm": lambda argv: _control("jobsub_rm", argv),
    "jobsub_fetchlog": cmd_fetchlog,
    "fake_jobsub_set": cmd_set,
}


def main(name):
    argv = sys.argv[1:]
    if name != "fake_jobsub_set":
        log_call(name, argv)
    sys.exit(COMMANDS[name](argv))
