"""A stub SAM web server: the REST calls POMS makes (reference/poms.md §11) over real HTTP,
answered from a small in-memory catalogue, with the dimension strings evaluated.

It serves, under /sam/<experiment>/api:

    POST   /definitions/create                      defname, dims, user, group → 200 | 409 exists | 400 bad dims
    GET    /definitions/name/<d>[?format=json]      → JSON description | 404
    DELETE /definitions/name/<d>                    → 200 | 404
    POST   /definitions/name/<d>/snapshot           group → snapshot id (text)
    GET    /files/count?dims=…   POST /files/count  → count (text); 400 for bad dims or an unknown defname
    GET    /files/list?dims=…&format=json           → JSON list of names (text lines without format=json)
    GET    /files/name/<f>/metadata?format=json     → JSON metadata
    GET    /projects/name/<p>/summary?format=json&process_limit=0  → JSON summary | 404
    GET    /projects/name/<p>/recovery_dimensions?useProcess=1     → dims text, empty when all consumed

The dimension language understood is the subset POMS uses (and `samweb.dims` prints):
`defname:`, `snapshot_id`, `snapshot_for_project_name`, `project_name P [and consumed_status
a,b|'co%']`, `isparentof:( … )`, `ischildof:( … )`, `version`, `file_name [like]`,
`create_date`/`end_time` compared with > >= < <= =, `run_number` (run or run.subrun),
`and` / `or` / `minus`, parentheses, and `with limit N [offset M]`, `with stride N [offset M]`,
`with availability physical|anylocation` after any expression or parenthesised group.
Precedence: `and` and `minus` bind tighter than `or`, and go left to right (POMS's
byexistingruns writes `defname: d minus snapshot_id S and run_number R` and means
`(d minus S) and run R`). A value with
% or _ wildcards matches like SQL LIKE even without `like` (POMS's wrapup writes
`file_name %.root`). Limit and stride count files in name order, as the built-in catalogue
does. Availability as SAM has it: every expression group (the whole string, a parenthesised
group, the inside of isparentof/ischildof) yields only located files (availability
"physical") unless it says `with availability anylocation` — which is why POMS's "kids
located" check has no availability clause and its "kids declared" checks say anylocation.
Files declared without a location have availability "virtual" here.

Failure injection, switchable from a test: `server.inject(path_glob, kind, …)` with kind
"timeout" (answer only after `delay` seconds, longer than the client waits), "error" (HTTP
`status`, 503 by default), "conflict" (409 on create) or "query_limit" (SAM's query-limit
reply); `times` limits how many requests it hits. `server.requests` logs every request.
"""

import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


class DimsError(Exception):
    """Bad dimensions or an unknown definition/snapshot: SAM answers 400."""


# --- the catalogue ---------------------------------------------------------------------------


@dataclass
class File:
    name: str
    file_id: int
    version: str = "v1"
    run_number: int | None = None
    subrun: int = 0
    create_date: datetime = EPOCH
    end_time: datetime | None = None
    parents: tuple = ()
    availability: str = "physical"  # "physical": has a location; anything else: declared only

    def metadata(self):
        return {
            "file_name": self.name,
            "file_id": self.file_id,
            "create_date": self.create_date.isoformat(),
            "end_time": self.end_time.isoformat() if self.end_time else None,
            "application": {"version": self.version},
            "runs": [[self.run_number, self.subrun, "physics"]] if self.run_number is not None else [],
            "parents": [{"file_name": p} for p in self.parents],
        }


@dataclass
class Project:
    name: str
    snapshot_id: int
    statuses: dict  # file name → consumption status, None while undelivered
    status: str = "running"
    dataset: str = ""


@dataclass
class Catalogue:
    files: dict = field(default_factory=dict)
    definitions: dict = field(default_factory=dict)  # name → dims text
    snapshots: dict = field(default_factory=dict)  # id → sorted file names
    projects: dict = field(default_factory=dict)
    next_snapshot: int = 1000
    lock: threading.RLock = field(default_factory=threading.RLock)

    def add_file(self, name, **attrs):
        with self.lock:
            self.files[name] = File(name=name, file_id=len(self.files) + 1, **attrs)
            return self.files[name]

    def define(self, name, dims):
        parse(dims)
        with self.lock:
            self.definitions[name] = dims

    def add_snapshot(self, names):
        with self.lock:
            sid = self.next_snapshot
            self.next_snapshot += 1
            self.snapshots[sid] = sorted(names)
            return sid

    def add_project(self, name, statuses, status="running", dataset=""):
        """A project whose snapshot is the files of `statuses` (name → status or None)."""
        with self.lock:
            sid = self.add_snapshot(statuses)
            self.projects[name] = Project(name, sid, dict(statuses), status, dataset)
            return self.projects[name]

    def evaluate(self, dims):
        """The sorted file names `dims` selects."""
        with self.lock:
            return sorted(Evaluator(self).eval(parse(dims)))


# --- dimension strings: parsing ----------------------------------------------------------------

_TOKENS = re.compile(r"\s*(?:'([^']*)'|(\()|(\))|([^\s()']+))")
_OPS = (">", ">=", "<", "<=", "=")
_DATE_FORMATS = ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")


def tokenize(text):
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKENS.match(text, pos)
        if not m or m.end() == pos:
            raise DimsError(f"cannot read the dimensions at {text[pos:]!r}")
        quoted, opening, closing, word = m.groups()
        if quoted is not None:
            tokens.append(("value", quoted))
        elif opening:
            tokens.append(("(", "("))
        elif closing:
            tokens.append((")", ")"))
        else:
            tokens.append(("word", word))
        pos = m.end()
    return tokens


def parse(text):
    parser = _Parser(tokenize(text))
    node = parser.group()
    if parser.peek() is not None:
        raise DimsError(f"unexpected {parser.peek()[1]!r} in {text!r}")
    return node


def parse_date(text):
    for fmt in _DATE_FORMATS:
        try:
            dt = datetime.strptime(text, fmt)  # noqa: DTZ007 — naive SAM times are UTC, made aware below
        except ValueError:
            continue
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    raise DimsError(f"not a date: {text!r}")


class _Parser:
    def __init__(self, tokens):
        self.tokens, self.pos = tokens, 0

    def peek(self, ahead=0):
        i = self.pos + ahead
        return self.tokens[i] if i < len(self.tokens) else None

    def keyword(self, ahead=0):
        tok = self.peek(ahead)
        return tok[1].lower() if tok and tok[0] == "word" else None

    def take(self):
        tok = self.peek()
        if tok is None:
            raise DimsError("the dimensions end too early")
        self.pos += 1
        return tok

    def expect(self, kind):
        tok = self.take()
        if tok[0] != kind:
            raise DimsError(f"expected {kind!r}, got {tok[1]!r}")

    def value(self):
        kind, text = self.take()
        if kind not in ("word", "value"):
            raise DimsError(f"expected a value, got {text!r}")
        return text

    def integer(self):
        text = self.value()
        if not text.isdigit():
            raise DimsError(f"expected a number, got {text!r}")
        return int(text)

    def group(self):
        node = self.expr()
        mods = []
        while self.keyword() == "with":
            self.take()
            what = self.keyword()
            self.take()
            if what in ("limit", "stride"):
                n, offset = self.integer(), 0
                if self.keyword() == "offset":
                    self.take()
                    offset = self.integer()
                mods.append((what, n, offset))
            elif what == "availability":
                mods.append(("availability", self.value().lower()))
            else:
                raise DimsError(f"unknown 'with {what}'")
        return ("group", node, mods)

    def expr(self):
        node = self.term()
        while self.keyword() in ("or", "union"):
            self.take()
            node = ("or", node, self.term())
        return node

    def term(self):
        node = self.factor()
        while self.keyword() in ("and", "minus"):
            op = self.take()[1].lower()
            node = (op, node, self.factor())
        return node

    def factor(self):
        kind, text = self.take()
        if kind == "(":
            node = self.group()
            self.expect(")")
            return node
        if kind != "word":
            raise DimsError(f"unexpected {text!r}")
        word = text.lower()
        if word.startswith("defname:"):
            return ("defname", text[len("defname:") :] or self.value())
        if word in ("isparentof:", "ischildof:"):
            self.expect("(")
            node = self.group()
            self.expect(")")
            return ("parents" if word == "isparentof:" else "children", node)
        if word == "snapshot_id":
            return ("snapshot_id", self.integer())
        if word == "snapshot_for_project_name":
            return ("project_snapshot", self.value())
        if word == "project_name":
            project = self.value()
            # "project_name P and consumed_status S" is one selection: S only means something
            # for the files of a project.
            if self.keyword() == "and" and self.keyword(1) == "consumed_status":
                self.take(), self.take()
                return ("project", project, self.value().split(","))
            return ("project", project, None)
        if word in ("version", "file_name", "run_number"):
            op = "="
            if self.keyword() == "like":
                self.take()
                op = "like"
            return ("attr", word, op, self.value().split(","))
        if word in ("create_date", "end_time"):
            op = self.value()
            if op not in _OPS:
                raise DimsError(f"unknown comparison {op!r} for {word}")
            return ("attr", word, op, parse_date(self.value()))
        raise DimsError(f"unknown dimension {text!r}")


# --- dimension strings: evaluation --------------------------------------------------------------


def like(pattern, value):
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value) is not None


def _matches_value(patterns, value):
    return any(like(p, value) if ("%" in p or "_" in p) else p == value for p in patterns)


class Evaluator:
    def __init__(self, catalogue):
        self.cat = catalogue

    def eval(self, node, seen=()):  # noqa: C901
        kind = node[0]
        if kind == "defname":
            name = node[1]
            if name not in self.cat.definitions:
                raise DimsError(f"Definition {name} not found")
            if name in seen:
                raise DimsError(f"definition {name} refers to itself")
            return self.eval(parse(self.cat.definitions[name]), (*seen, name))
        if kind == "snapshot_id":
            if node[1] not in self.cat.snapshots:
                raise DimsError(f"snapshot {node[1]} not found")
            return set(self.cat.snapshots[node[1]])
        if kind == "project_snapshot":
            project = self._project(node[1])
            return set(self.cat.snapshots[project.snapshot_id])
        if kind == "project":
            project = self._project(node[1])
            wanted = node[2]
            return {f for f, st in project.statuses.items() if wanted is None or (st and _matches_value(wanted, st))}
        if kind == "attr":
            return {f.name for f in self.cat.files.values() if self._attr(f, *node[1:])}
        if kind in ("and", "or", "minus"):
            a, b = self.eval(node[1], seen), self.eval(node[2], seen)
            return a & b if kind == "and" else a | b if kind == "or" else a - b
        if kind == "parents":
            inner = self.eval(node[1], seen)
            return {p for f in inner for p in self.cat.files[f].parents if p in self.cat.files}
        if kind == "children":
            inner = self.eval(node[1], seen)
            return {f.name for f in self.cat.files.values() if inner.intersection(f.parents)}
        if kind == "group":
            files = self.eval(node[1], seen)
            mods = node[2]
            # SAM answers with located files unless asked otherwise: the availability (given or
            # the default, physical) applies before any limit or stride.
            availability = next((m[1] for m in mods if m[0] == "availability"), "physical")
            if availability == "physical":
                files = {f for f in files if self.cat.files[f].availability == "physical"}
            elif availability != "anylocation":
                raise DimsError(f"unknown availability {availability!r}")
            for mod in mods:
                if mod[0] == "limit":
                    files = set(sorted(files)[mod[2] : mod[2] + mod[1]])
                elif mod[0] == "stride":
                    files = {f for k, f in enumerate(sorted(files)) if k % mod[1] == mod[2]}
            return files
        raise DimsError(f"cannot evaluate {kind}")

    def _project(self, name):
        if name not in self.cat.projects:
            raise DimsError(f"project {name} not found")
        return self.cat.projects[name]

    @staticmethod
    def _attr(f, name, op, value):
        if name == "version":
            return _matches_value(value, f.version)
        if name == "file_name":
            return _matches_value(value, f.name)
        if name == "run_number":
            for v in value:
                run, _, subrun = v.partition(".")
                if f.run_number == int(run) and (not subrun or f.subrun == int(subrun)):
                    return True
            return False
        have = f.create_date if name == "create_date" else f.end_time
        if have is None:
            return False
        return {
            ">": have > value,
            ">=": have >= value,
            "<": have < value,
            "<=": have <= value,
            "=": have == value,
        }[op]


# --- HTTP ------------------------------------------------------------------------------------


@dataclass
class Fault:
    path: str  # glob on the path after /sam/<exp>/api
    kind: str  # "timeout" | "error" | "conflict" | "query_limit"
    method: str | None = None
    times: int | None = None  # None: every matching request
    status: int | None = None  # "error": 503 unless given; "query_limit": 200 unless given
    delay: float = 2.0
    text: str = ""
    hits: int = 0

    def applies(self, method, path):
        if self.method and self.method != method:
            return False
        if self.times is not None and self.hits >= self.times:
            return False
        return fnmatchcase(path, self.path)


@dataclass
class Request:
    method: str
    experiment: str
    path: str
    params: dict
    form: dict


_API = re.compile(r"^/sam/(?P<exp>[^/]+)/api(?P<path>/.*)$")


class _Handler(BaseHTTPRequestHandler):
    server_version = "StubSAM/1.0"

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")

    def _send(self, status, body, content_type="text/plain"):
        data = body.encode() if isinstance(body, str) else body
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (a timeout test)

    def _json(self, obj, status=200):
        self._send(status, json.dumps(obj), "application/json")

    def _handle(self, method):
        sam = self.server.sam
        url = urllib.parse.urlsplit(self.path)
        m = _API.match(url.path)
        if not m:
            return self._send(404, "not a SAM API path")
        path = m["path"]
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        form = {}
        if method == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            form = {k: v[-1] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}
        sam.log(Request(method, m["exp"], path, params, form))

        fault = sam.fault_for(method, path)
        if fault is not None:
            if fault.kind == "timeout":
                sam.stopping.wait(fault.delay)
            elif fault.kind == "conflict":
                return self._send(409, fault.text or "Definition already exists")
            elif fault.kind == "query_limit":
                text = fault.text or "Error: the query exceeded the query limit of 10000 files"
                return self._send(fault.status or 200, text)
            else:
                return self._send(fault.status or 503, fault.text or "Service Unavailable")

        try:
            self._route(method, path, params, form)
        except DimsError as exc:
            self._send(400, str(exc))

    def _route(self, method, path, params, form):  # noqa: C901
        cat = self.server.sam.catalogue
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        with cat.lock:
            if parts == ["definitions", "create"] and method == "POST":
                name, dims = form.get("defname", ""), form.get("dims", "")
                if not name or not dims:
                    return self._send(400, "defname and dims are required")
                if name in cat.definitions:
                    return self._send(409, f"Definition {name} already exists")
                cat.define(name, dims)
                return self._send(200, f"Dataset definition {name} has been created")
            if parts[:2] == ["definitions", "name"] and len(parts) == 3:
                name = parts[2]
                if name not in cat.definitions:
                    return self._send(404, f"Definition {name} not found")
                if method == "DELETE":
                    del cat.definitions[name]
                    return self._send(200, "")
                return self._json({"defname": name, "dimensions": cat.definitions[name], "username": "sam"})
            if parts[:2] == ["definitions", "name"] and parts[3:] == ["snapshot"] and method == "POST":
                if parts[2] not in cat.definitions:
                    return self._send(404, f"Definition {parts[2]} not found")
                return self._send(200, str(cat.add_snapshot(cat.evaluate(f"defname:{parts[2]}"))))
            if parts == ["files", "count"]:
                dims = (form if method == "POST" else params).get("dims", "")
                return self._send(200, str(len(cat.evaluate(dims))))
            if parts == ["files", "list"]:
                names = cat.evaluate(params.get("dims", ""))
                if params.get("format") == "json":
                    return self._json(names)
                return self._send(200, "".join(n + "\n" for n in names))
            if parts[:2] == ["files", "name"] and parts[3:] == ["metadata"]:
                if parts[2] not in cat.files:
                    return self._send(404, f"File {parts[2]} not found")
                return self._json(cat.files[parts[2]].metadata())
            if parts[:2] == ["projects", "name"] and len(parts) == 4:
                project = cat.projects.get(parts[2])
                if project is None:
                    return self._send(404, f"Project {parts[2]} not found")
                if parts[3] == "summary":
                    return self._json(self._summary(project, cat))
                if parts[3] == "recovery_dimensions":
                    return self._send(200, self._recovery(project))
        return self._send(404, f"no such SAM API: {method} {path}")

    @staticmethod
    def _summary(project, cat):
        counts = {}
        for status in project.statuses.values():
            if status:
                counts[status] = counts.get(status, 0) + 1
        return {
            "project_name": project.name,
            "project_status": project.status,
            "files_in_snapshot": len(cat.snapshots[project.snapshot_id]),
            "dataset_def_name": project.dataset,
            "file_counts": counts,
            "process_counts": {},
            "processes": [],  # process_limit=0
        }

    @staticmethod
    def _recovery(project):
        # SAM's real answer also weighs process status; this stub only says whether something
        # is left, in the words ("consumed_status consumed") that POMS rewrites to 'co%'.
        done = {"consumed", "completed"}
        if all(st in done for st in project.statuses.values()):
            return ""
        p = project.name
        return f"snapshot_for_project_name {p} minus (project_name {p} and consumed_status consumed)"


class SamServer:
    """The stub, on 127.0.0.1 and a free port, in a thread. `url` is its POMS_SAM_BASE."""

    def __init__(self):
        self.catalogue = Catalogue()
        self.requests = []
        self.faults = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.sam = self
        self._httpd.handle_error = lambda request, address: None  # clients hanging up mid-reply
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- failure injection and the request log -----------------------------------------------
    def inject(self, path, kind, **options):
        fault = Fault(path=path, kind=kind, **options)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self):
        with self._lock:
            self.faults.clear()

    def fault_for(self, method, path):
        with self._lock:
            for fault in self.faults:
                if fault.applies(method, path):
                    fault.hits += 1
                    return fault
        return None

    def log(self, request):
        with self._lock:
            self.requests.append(request)

    def calls(self, method=None, path=None):
        """(method, path) of the requests so far, optionally only those matching."""
        with self._lock:
            return [
                (r.method, r.path)
                for r in self.requests
                if (method is None or r.method == method) and (path is None or fnmatchcase(r.path, path))
            ]


@pytest.fixture
def sam_server():
    with SamServer() as server:
        yield server
