"""The query algebra every data-handling backend compiles (DESIGN §7).

Splits, recovery, dependencies, wrapup and file reports build these trees; they never write
SAM dimensions or SQL themselves. `samweb` compiles a tree to the dimension string POMS
would have built; `catalog` compiles it to SQL over the built-in file catalogue.

Semantics follow SAM's: `ParentsOf(q)` are the files that are parents of files in `q`
(SAM `isparentof:( q )`), `ChildrenOf(q)` the files that are children of files in `q`
(SAM `ischildof:( q )`); `depth` repeats the step (output_ancestor_depth).
"""

from dataclasses import dataclass, field
from datetime import datetime


class Query:
    """Base of every node; nodes are immutable and hashable."""

    def __sub__(self, other):
        return Minus(self, other)

    def __and__(self, other):
        return And(self, other)

    def __or__(self, other):
        return Union((self, other))


@dataclass(frozen=True)
class Dataset(Query):
    """A named dataset (SAM definition)."""

    name: str


@dataclass(frozen=True)
class Snapshot(Query):
    """A frozen list of files, by snapshot id."""

    snapshot_id: int


@dataclass(frozen=True)
class ProjectSnapshot(Query):
    """The files a project was given (SAM `snapshot_for_project_name`)."""

    project: str


# Consumption statuses a project records per file. "co%" in SAM means consumed or completed.
CONSUMED = "consumed"
COMPLETED = "completed"
FAILED = "failed"
SKIPPED = "skipped"
DELIVERED = "delivered"
UNKNOWN = "unknown"
CANCELLED = "cancelled"
TRANSFERRED = "transferred"
UNCONSUMED = "unconsumed"
CONSUMED_LIKE = "co%"


@dataclass(frozen=True)
class ProjectFiles(Query):
    """The files of a project whose consumption status is one of `statuses`."""

    project: str
    statuses: tuple


@dataclass(frozen=True)
class Match(Query):
    """All files whose attributes match; unset fields do not constrain."""

    version: str | None = None
    name_like: str | None = None  # SQL LIKE pattern: %.root
    created_after: datetime | None = None
    availability: str | None = None  # "physical" (located) or "anylocation"
    run_number: int | None = None
    end_time_after: datetime | None = None  # end_time > …
    end_time_until: datetime | None = None  # end_time <= …


@dataclass(frozen=True)
class And(Query):
    left: Query
    right: Query


@dataclass(frozen=True)
class Minus(Query):
    left: Query
    right: Query


@dataclass(frozen=True)
class Union(Query):
    parts: tuple


@dataclass(frozen=True)
class Limit(Query):
    source: Query
    limit: int
    offset: int = 0


@dataclass(frozen=True)
class Stride(Query):
    source: Query
    stride: int
    offset: int = 0


@dataclass(frozen=True)
class ParentsOf(Query):
    source: Query
    depth: int = 1


@dataclass(frozen=True)
class ChildrenOf(Query):
    source: Query
    depth: int = 1


@dataclass(frozen=True)
class Raw(Query):
    """A backend-specific fragment a user typed (e.g. a SAM dims file pattern with spaces).

    POMS accepts raw dimension fragments in output file patterns; a backend that cannot
    interpret its own dialect raises DataHandlerError.
    """

    backend: str
    text: str


@dataclass
class ProjectSummary:
    """What a project did with its files (SAM project summary)."""

    project: str
    status: str = ""
    files_in_snapshot: int = 0
    counts: dict = field(default_factory=dict)  # consumption status → number of files

    def count(self, *statuses):
        return sum(self.counts.get(s, 0) for s in statuses)

    @property
    def delivered_total(self):
        return self.count(CONSUMED, COMPLETED, CANCELLED, FAILED, SKIPPED, DELIVERED)


NODES = {
    cls.__name__: cls
    for cls in (Dataset, Snapshot, ProjectSnapshot, ProjectFiles, Match, And, Minus, Union, Limit, Stride, ParentsOf,
                ChildrenOf, Raw)
}  # fmt: skip


def to_json(query):
    """A JSON-able form of a query tree (stored by named datasets, shown in workflow logs)."""
    if isinstance(query, Query):
        out = {"node": type(query).__name__}
        for name in query.__dataclass_fields__:
            out[name] = to_json(getattr(query, name))
        return out
    if isinstance(query, tuple | list):
        return [to_json(q) for q in query]
    if isinstance(query, datetime):
        return {"datetime": query.isoformat()}
    return query


def from_json(data):
    if isinstance(data, dict) and "node" in data:
        cls = NODES[data["node"]]
        fields = {k: from_json(v) for k, v in data.items() if k != "node"}
        for name in ("statuses", "parts"):
            if name in fields:
                fields[name] = tuple(fields[name])
        return cls(**fields)
    if isinstance(data, dict) and "datetime" in data:
        return datetime.fromisoformat(data["datetime"])
    if isinstance(data, list):
        return [from_json(d) for d in data]
    return data
