"""What every split type shares: its errors, the step it computes, parameter parsing and data access."""

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

from sam_adapter import query as q
from sam_adapter.interface import DataHandler, DataHandlerError


class SplitsExhausted(Exception):
    """The stage has no next split; the message says why and is shown as the launch error."""


class SplitError(ValueError):
    """A malformed split spec or dataset field; the message names the problem."""


def exhausted(reason):
    return SplitsExhausted(f"No more splits in this stage: {reason}")


class Data:
    """The campaign's DataHandler as a split sees it.

    The handler is made on first use, so splits that never touch data (None, list, multiparam)
    work even when the data-handling service is down or not configured. In a dry run nothing is
    written — no definitions, no snapshots — but queries still run, so a dry run reports an
    exhausted split exactly as the launch would.
    """

    def __init__(self, handler, dry=False):
        self._handler = handler  # a DataHandler, or a zero-argument callable that makes one
        self.dry = dry

    @property
    def handler(self):
        if self._handler is None:
            raise DataHandlerError("no data handling backend was given to this split")
        if not isinstance(self._handler, DataHandler):
            self._handler = self._handler()
        return self._handler

    def count(self, query):
        return self.handler.count(query)

    def first_file(self, query):
        names = self.handler.list_files(query, limit=1)
        return names[0] if names else None

    def define(self, name, query):
        if not self.dry:
            self.handler.define(name, query)

    def snapshot(self, query):
        return None if self.dry else self.handler.snapshot(query)

    def run_of(self, file_name):
        """The first run number in a file's metadata (SAM get-metadata: "runs": [[run, subrun, type], …])."""
        read = getattr(self.handler, "file_metadata", None)
        if read is None:
            raise DataHandlerError(f"the {self.handler.name} backend cannot read file metadata, which this split needs")
        metadata = read(file_name) or {}
        runs = metadata.get("runs") or []
        if runs and runs[0]:
            return int(runs[0][0])
        if metadata.get("run_number") is not None:
            return int(metadata["run_number"])
        raise SplitError(f"file {file_name} has no run number in its metadata, so it belongs to no run")


@dataclass
class Step:
    """One request for the next split: the stage's dataset field and cursor, the parsed parameters."""

    dataset: str
    cursor: int | None
    params: dict
    data: Data
    now: float  # unix time; injected so time-window splits are testable

    def source(self, kind):
        """The stage dataset as a query; splits that slice data need one."""
        if not self.dataset.strip():
            raise SplitError(f"split type {kind} needs the stage's dataset, and it is empty")
        return q.Dataset(self.dataset.strip())


class SplitType(ABC):
    """A split type: `next(step)` returns `(dataset name, new cursor)` or raises SplitsExhausted.

    `parameters` are what the editor offers, `syntax` how a spec is written, `doc` the help
    text; `uses_data` says whether the type queries the data handler, `has_cursor` whether it
    keeps a cursor at all (the cursor form is pointless otherwise).
    """

    name = ""
    syntax = ""
    parameters = ()
    doc = ""
    uses_data = False
    has_cursor = True
    takes_number = False  # accepts the legacy `name_n` spelling, as POMS did for mod_4

    def parse(self, args):
        """Validated parameters from the text between the parentheses (None when there were none)."""
        if args:
            raise SplitError(f"split type {self.name} takes no parameters, got ({args})")
        return {}

    @abstractmethod
    def next(self, step):
        """(dataset name, new cursor) for the launch `step` describes; SplitsExhausted at the end."""


class NumberSplit(SplitType):
    """A type taking exactly one positive whole number, as mod(n) or nfiles(n)."""

    parameters = ("n",)
    takes_number = True

    def parse(self, args):
        if not args or not re.fullmatch(r"\d+", args) or int(args) < 1:
            shown = f"({args})" if args is not None else "nothing"
            raise SplitError(f"split type {self.name} needs one whole number n ≥ 1, as {self.syntax}; got {shown}")
        return {"n": int(args)}


def keywords(kind, args, allowed):
    """`a=1,b=2` → {"a": "1", "b": "2"}, refusing unknown or repeated names."""
    found = {}
    for part in (args or "").split(","):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or not value:
            raise SplitError(f"split type {kind}: expected name=value, got {part!r}")
        if name not in allowed:
            raise SplitError(f"split type {kind} has no parameter {name!r}; it takes {', '.join(allowed)}")
        if name in found:
            raise SplitError(f"split type {kind}: {name} is given twice")
        found[name] = value
    return found
