"""new(...) and new_local(...): successive time windows of the files' end_time, up to now − fts."""

import re
import uuid
from datetime import UTC, datetime

from django.utils import timezone

from sam_adapter import query as q

from .base import SplitError, SplitType, exhausted, keywords

UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
DEFAULTS = {"window": 604800, "round": 1, "fts": 1800, "firsttime": None, "lasttime": None}


def seconds(kind, key, text):
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)([wdhms]?)", text)
    if not match:
        raise SplitError(f"split type {kind}: {key} must be a number with an optional w/d/h/m/s suffix, got {text!r}")
    return float(match[1]) * UNITS.get(match[2], 1)


def query_time(unix, local):
    """A window bound for the query. POMS formats bounds in the server's local time when asked
    to, with no zone; keeping that wall-clock reading (labelled UTC) makes every backend compare
    against the same times POMS wrote."""
    instant = datetime.fromtimestamp(unix, tz=UTC)
    if local:
        return instant.astimezone(timezone.get_current_timezone()).replace(tzinfo=UTC)
    return instant


class New(SplitType):
    name = "new"
    syntax = "new(window=1w,round=1s,fts=30m,localtime=0,firsttime=<unix>,lasttime=<unix>)"
    parameters = ("window", "round", "fts", "localtime", "firsttime", "lasttime")
    uses_data = True
    local = False
    doc = (
        "Files that are new since the last launch, one time window of end_time per launch "
        "(<dataset>_<uuid>_time_<start>__<end>). window: the window length (default 1w); round: round the "
        "times to a multiple of this; fts: how long the file catalogue takes to register new files (default "
        "30m); localtime=1: compare in the server's local time; firsttime: unix time of the first window's "
        "start (default: the latest full window); lasttime: stop there instead of now. Durations take a "
        "w/d/h/m/s suffix. Ends, until later, when the next window would pass now − fts."
    )

    def parse(self, args):
        given = keywords(self.name, args, self.parameters)
        params = {**DEFAULTS, "localtime": self.local}
        for key, text in given.items():
            value = seconds(self.name, key, text)
            params[key] = bool(value) if key == "localtime" else value
        if params["round"] < 1:
            raise SplitError(f"split type {self.name}: round must be at least 1 second")
        # As POMS: the window is a whole multiple of the rounding.
        params["window"] = int(params["window"]) - int(params["window"]) % int(params["round"])
        if params["window"] <= 0:
            raise SplitError(f"split type {self.name}: the window must be at least one rounding ({params['round']} s)")
        return params

    def next(self, step):
        p, source = step.params, step.source(self.name)
        rounding, window = int(p["round"]), p["window"]
        last = step.now if p["lasttime"] is None else p["lasttime"]
        bound = int(last - p["fts"] - window)
        bound -= bound % rounding  # the latest start whose window ends by lasttime − fts
        start = step.cursor or (bound if p["firsttime"] is None else int(p["firsttime"]))
        if start > bound:
            ends = datetime.fromtimestamp(start + window, tz=UTC)
            raise exhausted(
                f"the next window of {self.name} would end at {ends:%Y-%m-%d %H:%M:%S} UTC, later than "
                f"{'lasttime' if p['lasttime'] is not None else 'now'} − fts; launch again later."
            )
        end = start + window
        name = f"{source.name}_{uuid.uuid4()}_time_{start}__{end}"
        local = p["localtime"]
        step.data.define(
            name, q.And(source, q.Match(end_time_after=query_time(start, local), end_time_until=query_time(end, local)))
        )
        return name, end


class NewLocal(New):
    name = "new_local"
    syntax = "new_local(window=1w,round=1s,fts=30m,firsttime=<unix>,lasttime=<unix>)"
    local = True
    doc = "As new(...), with times compared in the server's local time (localtime=1)."
