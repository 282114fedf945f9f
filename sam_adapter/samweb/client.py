"""SAM over HTTP: the calls POMS's samweb_lite makes (reference/poms.md §11), behind DataHandler.

Reads (counts, lists, metadata, definitions, project summaries, recovery dimensions) use a
timeout, retry connection failures, timeouts and 5xx with exponential backoff, and remember a
URL that kept failing: it is skipped ("skipped: failed recently") for ten minutes, as POMS's
faulty_requests table did, so a sick SAM is not hammered by every page and poll. HTTP 400 is
read like 404 (SAM answers 400 when a definition in the dims does not exist) and is no fault.
Writes (definitions, snapshots) carry the service certificate and retry a few times, seconds
apart. Every failure is a DataHandlerError naming the URL and the reason.

Settings (all optional): POMS_SAM_BASE (default https://samweb.fnal.gov:8483; "web" in the
host becomes the experiment, samweb → samnova), POMS_SAM_CERT / POMS_SAM_KEY (client
certificate for writes), POMS_SAM_VERIFY (TLS verification: True, False or a CA bundle path),
POMS_SAM_TIMEOUT, POMS_SAM_RETRIES, POMS_SAM_BACKOFF.
"""

import hashlib
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests
from django.conf import settings
from django.core.cache import caches

from ..interface import DataHandler, DataHandlerError
from ..query import Dataset, Limit, ProjectSummary, Raw
from .dims import to_dims

DEFAULT_BASE = "https://samweb.fnal.gov:8483"


def sam_base_for(base, experiment):
    """POMS's per-experiment SAM host: "web" in the host name becomes the experiment
    (samweb.fnal.gov → samnova.fnal.gov), and samsamdev → samdev."""
    parts = urllib.parse.urlsplit(base.rstrip("/"))
    host = parts.netloc.replace("web", experiment, 1).replace("samsamdev", "samdev")
    return urllib.parse.urlunsplit(parts._replace(netloc=host))


class FailingUrls:
    """URLs whose last read failed, skipped for `ttl` seconds (POMS: faulty_requests, 10 min).

    Kept in Django's cache so web and worker processes share it when the cache is shared; the
    time stored comes from `clock`, so tests can move time on without waiting. Each entry also
    expires on its own after `ttl` real seconds."""

    def __init__(self, ttl=600.0, clock=time.time, cache_alias="default", namespace="samweb-fault"):
        self.ttl = ttl
        self.clock = clock
        self.cache_alias = cache_alias
        self.namespace = namespace

    def _key(self, url):
        return f"{self.namespace}:{hashlib.sha256(url.encode()).hexdigest()}"

    def failed_recently(self, url):
        seen = caches[self.cache_alias].get(self._key(url))
        return seen is not None and self.clock() - seen < self.ttl

    def record(self, url):
        caches[self.cache_alias].set(self._key(url), self.clock(), timeout=int(self.ttl) + 1)

    def forget(self, url):
        caches[self.cache_alias].delete(self._key(url))


class _Transient(Exception):
    """A failure worth another try: timeout, connection error, 5xx."""


class SamwebHandler(DataHandler):
    name = "samweb"

    def __init__(
        self,
        experiment,
        *,
        base=None,
        timeout=None,
        retries=None,
        backoff=None,
        write_timeout=60.0,
        write_tries=3,
        create_pause=5.0,
        snapshot_pause=1.0,
        user="sam",
        failing_urls=None,
        sleep=time.sleep,
    ):
        self.experiment = experiment
        base = base or getattr(settings, "POMS_SAM_BASE", DEFAULT_BASE) or DEFAULT_BASE
        self.api = f"{sam_base_for(base, experiment)}/sam/{urllib.parse.quote(experiment, safe='')}/api"
        # POMS's safe_get: 5 s timeout, Retry(total=5, backoff_factor=0.2).
        self.timeout = timeout if timeout is not None else getattr(settings, "POMS_SAM_TIMEOUT", 5.0)
        self.retries = retries if retries is not None else getattr(settings, "POMS_SAM_RETRIES", 5)
        self.backoff = backoff if backoff is not None else getattr(settings, "POMS_SAM_BACKOFF", 0.2)
        # POMS retries definition creates 5 s apart and snapshots 1 s apart; POMS sets no timeout
        # on writes at all, we never wait forever.
        self.write_timeout = write_timeout
        self.write_tries = write_tries
        self.create_pause = create_pause
        self.snapshot_pause = snapshot_pause
        self.user = user  # POMS creates every definition as user "sam", group = experiment
        self.failing_urls = failing_urls or FailingUrls()
        self.sleep = sleep
        self.verify = getattr(settings, "POMS_SAM_VERIFY", True)
        cert, key = getattr(settings, "POMS_SAM_CERT", None), getattr(settings, "POMS_SAM_KEY", None)
        self.cert = (cert, key) if cert and key else cert or None

    # --- HTTP ---------------------------------------------------------------------------------
    def url(self, path):
        return self.api + path

    @staticmethod
    def _name(name):
        return urllib.parse.quote(str(name), safe="")

    def _attempt(self, method, url, *, timeout, ok=(), accept=None, cert=None, **kwargs):
        """One request. Returns the response for 2xx, the statuses in `ok` and replies `accept`
        takes whatever their status; raises _Transient for what may pass, _Refused otherwise."""
        try:
            reply = requests.request(method, url, timeout=timeout, verify=self.verify, cert=cert, **kwargs)
        except requests.Timeout:
            raise _Transient(f"timed out after {timeout} s") from None
        except requests.RequestException as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from None
        if 200 <= reply.status_code < 300 or reply.status_code in ok or (accept and accept(reply)):
            return reply
        reason = f"HTTP {reply.status_code} {reply.reason}: {reply.text.strip()[:300]}"
        if reply.status_code >= 500:
            raise _Transient(reason)
        raise _Refused(reply.status_code, reason)

    def _read(self, method, path, *, params=None, data=None, ok=(), accept=None):
        """A read with retries, backoff and the failing-URL cache. A POST read (a count with a
        long dims string) is remembered by URL and body, or one bad count would block them all."""
        url = self.url(path)
        fault_key = f"{method} {url}?{urllib.parse.urlencode(sorted((params or {}).items()))}"
        if data:
            fault_key += " " + urllib.parse.urlencode(sorted(data.items()))
        if self.failing_urls.failed_recently(fault_key):
            raise DataHandlerError(f"SAM {method} {url}: skipped: failed recently")
        reason = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                return self._attempt(method, url, timeout=self.timeout, ok=ok, accept=accept, params=params, data=data)
            except _Transient as exc:
                reason = str(exc)
            except _Refused as exc:
                if exc.status not in (400, 404):  # POMS: 400 and 404 are answers, not faults
                    self.failing_urls.record(fault_key)
                raise DataHandlerError(f"SAM {method} {url}: {exc.reason}") from None
        self.failing_urls.record(fault_key)
        raise DataHandlerError(f"SAM {method} {url}: {reason} (after {self.retries + 1} attempts)")

    def _write(self, method, path, *, data=None, tries=None, pause=0.0, ok=()):
        url = self.url(path)
        tries = tries or self.write_tries
        reason = ""
        for attempt in range(tries):
            if attempt:
                self.sleep(pause)
            try:
                return self._attempt(method, url, timeout=self.write_timeout, ok=ok, cert=self.cert, data=data)
            except _Transient as exc:
                reason = str(exc)
            except _Refused as exc:
                raise DataHandlerError(f"SAM {method} {url}: {exc.reason}") from None
        raise DataHandlerError(f"SAM {method} {url}: {reason} (after {tries} attempts)")

    @staticmethod
    def _int(reply, url):
        try:
            return int(reply.text.strip())
        except ValueError:
            raise DataHandlerError(f"SAM {url}: expected a number, got {reply.text.strip()[:200]!r}") from None

    # --- counting and listing ----------------------------------------------------------------
    def count(self, query):
        """Exact count (POST /files/count, POMS count_files): what splits, recovery and
        dependencies decide on. SAM refusing with its query limit is an error here."""
        reply = self._read("POST", "/files/count", data={"dims": to_dims(query)})
        return self._int(reply, self.url("/files/count"))

    def count_estimate(self, query):
        """Count for reports (GET /files/count, POMS count_files_list): -1 when SAM answers that
        the query is over its query limit, as POMS shows it."""
        reply = self._read("GET", "/files/count", params={"dims": to_dims(query)}, accept=_over_query_limit)
        if _over_query_limit(reply):
            return -1
        return self._int(reply, self.url("/files/count"))

    def count_many(self, queries, workers=4):
        """count_estimate for many queries at once (POMS: a 4-thread pool); None where SAM failed."""

        def one(query):
            try:
                return self.count_estimate(query)
            except DataHandlerError:
                return None

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, queries))

    def list_files(self, query, limit=None):
        if limit is not None:
            query = _limited(query, limit)
        reply = self._read("GET", "/files/list", params={"dims": to_dims(query), "format": "json"})
        try:
            names = reply.json()
        except ValueError:
            names = None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataHandlerError(f"SAM {self.url('/files/list')}: expected a JSON list of file names")
        # SAM lists in its own order; sorting makes it stable (and like the catalog's).
        return sorted(names)

    def file_metadata(self, file_name):
        """SAM's metadata of one file (byexistingruns reads its `runs`)."""
        path = f"/files/name/{self._name(file_name)}/metadata"
        reply = self._read("GET", path, params={"format": "json"})
        try:
            return reply.json()
        except ValueError:
            raise DataHandlerError(f"SAM {self.url(path)}: the metadata is not JSON") from None

    # --- definitions and snapshots ---------------------------------------------------------------
    def define(self, name, query):
        """POST /definitions/create as POMS's create_definition; a 409 (the name exists) is
        handled as POMS does: delete the existing definition and create it again."""
        dims = to_dims(query)
        data = {"defname": name, "dims": dims, "user": self.user, "group": self.experiment}
        url = self.url("/definitions/create")
        reason = ""
        for attempt in range(self.write_tries):
            if attempt:
                self.sleep(self.create_pause)
            try:
                reply = self._attempt("POST", url, timeout=self.write_timeout, ok=(409,), cert=self.cert, data=data)
                if reply.status_code != 409:
                    return
                reason = "HTTP 409: the definition already exists"
                self._remove_existing(name)
                reply = self._attempt("POST", url, timeout=self.write_timeout, ok=(409,), cert=self.cert, data=data)
                if reply.status_code != 409:
                    return
            except _Transient as exc:
                reason = str(exc)
            except _Refused as exc:
                raise DataHandlerError(f"SAM POST {url} ({name}): {exc.reason}") from None
        raise DataHandlerError(f"SAM POST {url} ({name}): {reason} (after {self.write_tries} attempts)")

    def _remove_existing(self, name):
        # POMS's remove_existing_definition: GET it (it may be gone already), then DELETE.
        path = f"/definitions/name/{self._name(name)}"
        reply = self._attempt("GET", self.url(path), timeout=self.timeout, ok=(400, 404), params={"format": "json"})
        if reply.status_code == 200:
            self._attempt("DELETE", self.url(path), timeout=self.write_timeout, ok=(404,), cert=self.cert)

    def delete_definition(self, name):
        self._write("DELETE", f"/definitions/name/{self._name(name)}", ok=(400, 404), pause=self.create_pause)

    def definition_exists(self, name):
        path = f"/definitions/name/{self._name(name)}"
        reply = self._read("GET", path, params={"format": "json"}, ok=(400, 404))
        return reply.status_code == 200

    def snapshot(self, query):
        """POST /definitions/name/<d>/snapshot (POMS take_snapshot). SAM snapshots definitions,
        so any other query is first defined as poms_snapshot_<uuid> (left in place, as POMS
        leaves its slice and _full_ definitions)."""
        if isinstance(query, Dataset):
            name = query.name
        else:
            name = f"poms_snapshot_{uuid.uuid4().hex}"
            self.define(name, query)
        path = f"/definitions/name/{self._name(name)}/snapshot"
        reply = self._write("POST", path, data={"group": self.experiment}, pause=self.snapshot_pause)
        return self._int(reply, self.url(path))

    # --- projects ----------------------------------------------------------------------------------
    def project_summary(self, project):
        path = f"/projects/name/{self._name(project)}/summary"
        url = self.url(path)
        try:
            reply = self._read("GET", path, params={"format": "json", "process_limit": 0})
        except DataHandlerError as exc:
            raise DataHandlerError(f"project {project}: {exc}") from None
        try:
            info = reply.json()
        except ValueError:
            raise DataHandlerError(f"SAM {url}: the project summary is not JSON") from None
        try:
            return ProjectSummary(
                project=project,
                status=str(info.get("project_status", "") or ""),
                files_in_snapshot=int(info.get("files_in_snapshot") or 0),
                counts=_file_counts(info),
            )
        except (AttributeError, TypeError, ValueError):
            raise DataHandlerError(f"SAM {url}: unexpected project summary {info!r:.200}") from None

    def process_recovery(self, project):
        """SAM's own recovery dimensions for the project's processes (useProcess=1), with
        "consumed_status consumed" widened to 'co%' as POMS does (SAM records "completed" for
        files some processes report); None when SAM says there is nothing to recover."""
        path = f"/projects/name/{self._name(project)}/recovery_dimensions"
        dims = self._read("GET", path, params={"useProcess": 1}).text.strip()
        if not dims:
            return None
        return Raw("samweb", dims.replace("consumed_status consumed", "consumed_status 'co%'"))


class _Refused(Exception):
    def __init__(self, status, reason):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _over_query_limit(reply):
    # POMS looks for the words in the reply text whatever the HTTP status; so do we.
    return "query limit" in reply.text


def _limited(query, limit):
    """`query` with at most `limit` files, without stacking a second "with limit"."""
    if isinstance(query, Limit):
        return Limit(query.source, min(query.limit, limit), query.offset)
    return Limit(query, limit)


def _file_counts(info):
    """Per-status file counts from a summary: `file_counts`, or, when SAM lists processes,
    their `counts` summed (POMS's do_totals)."""
    processes = info.get("processes") or []
    if not processes:
        return {k: int(v) for k, v in (info.get("file_counts") or {}).items() if isinstance(v, int | float)}
    totals = {}
    for proc in processes:
        for status, n in (proc.get("counts") or {}).items():
            if isinstance(n, int | float):
                totals[status] = totals.get(status, 0) + int(n)
    return totals
