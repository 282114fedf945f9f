"""The query algebra compiled to SAM dimension strings (DESIGN §7).

For every place POMS builds a dimension string, `to_dims` prints the very bytes POMS prints —
doubled spaces, trailing blanks and inconsistent quoting included — so that definitions we
create in SAM, and the dims recorded in submission_params.workflow, read exactly like POMS's
and can be diffed against them. Those shapes are recognised first (`_poms_form`), each with
the POMS function it mirrors; every other tree gets a plain compositional rendering
(`_generic`) that parenthesises every compound operand, so its meaning never depends on
SAM's operator precedence.

Sources read (fermitools/poms, webservice/): split_types/{mod,nfiles,limitn,drainingn,
stagedfiles,byrun,byexistingruns,new}.py, SAMSpecifics.py (sam_specifics.create_recovery_dataset,
dependency_definition, get_file_stats_for_submissions, count_files_in_datasets;
sam_project_checker.add_project_submission, add_non_project_submission).

Where POMS prints one tree two ways, the tree alone cannot tell which was meant; the choice
made is noted at the form (limitn over nfiles chunk 0 and drainingn's first slice; drainingn's
snapshot accumulation over stagedfiles'; byrun over byexistingruns' first slice; dependency
datasets over the "available output" file statistic). The pairs select the same files.

Availability: SAM answers with located (physical) files unless a query says "with availability
anylocation"; POMS relies on that (its "kids located" statistic has no availability clause). So
an unset `Match.availability` prints nothing, except in the declared-kids statistics, where POMS
prints the anylocation that makes "unconstrained" true.

Times: `created_after` prints as POMS prints a submission's creation time,
`%Y-%m-%dT%H:%M:%S%z` (an aware UTC datetime gives `+0000`); `end_time_*` as the `new` split
prints its window, `%Y-%m-%dT%H:%M:%S` — the wall clock of the datetime as given, so pass UTC
for `new` and local time for `new_local`.
"""

import re

from ..interface import DataHandlerError
from ..query import (
    And,
    ChildrenOf,
    Dataset,
    Limit,
    Match,
    Minus,
    ParentsOf,
    ProjectFiles,
    ProjectSnapshot,
    Raw,
    Snapshot,
    Stride,
    Union,
)

BACKEND = "samweb"

# A value printed into a dimension string must stay one token: whitespace, quotes or
# parentheses would change what SAM parses (a dataset name typed in a form must never smuggle
# in "or defname:everything"). Fragments with spaces are what Raw("samweb", …) is for.
_TOKEN = re.compile(r"^[^\s'()]+$")
_RUN = re.compile(r"^\d+(\.\d+)?$")  # run, or run.subrun as byexistingruns prints it


def to_dims(query) -> str:
    """The SAM dimension string for `query`; DataHandlerError if SAM cannot express it."""
    text = _poms_form(query)
    return text if text is not None else _generic(query)


# --- value printing ------------------------------------------------------------------------


def _tok(value, what):
    text = str(value)
    if not _TOKEN.match(text):
        raise DataHandlerError(
            f"cannot put {what} {text!r} into a SAM dimension string: it must be one word without quotes or "
            "parentheses (use Raw('samweb', …) for a dimension fragment)"
        )
    return text


def _int(value, what):
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataHandlerError(f"{what} must be an integer, not {value!r}")
    return value


def _depth(value):
    depth = _int(value, "depth")
    if depth < 1:
        raise DataHandlerError(f"parentage depth must be at least 1, not {depth}")
    return depth


def _run(value):
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and _RUN.match(value):
        return value
    raise DataHandlerError(f"run_number must be an integer or run.subrun, not {value!r}")


def _created(dt):
    # SAMSpecifics: s.created.strftime("%Y-%m-%dT%H:%M:%S%z")
    return dt.strftime("%Y-%m-%dT%H:%M:%S%z")


def _end_time(dt):
    # split_types/new.py: time.strftime("%Y-%m-%dT%H:%M:%S", …)
    return dt.strftime("%Y-%m-%dT%H:%M:%S")


def _raw(node):
    if node.backend != BACKEND:
        raise DataHandlerError(f"samweb cannot use a raw {node.backend} fragment: {node.text!r}")
    return node.text


def _fields(m):
    """The names of the fields a Match sets."""
    return frozenset(name for name in m.__dataclass_fields__ if getattr(m, name) is not None)


def _flatten_and(node):
    if isinstance(node, And):
        return _flatten_and(node.left) + _flatten_and(node.right)
    return [node]


def _pattern(node):
    """(match, raw fragment or None) for a file-pattern selection, else None.

    POMS takes output file patterns from the job type or the dependency; a pattern with a space
    in it is a dimension fragment used as is instead of `file_name like …`. In the algebra that
    is a Match without name_like and-ed with a Raw("samweb", fragment)."""
    match node:
        case Match():
            return node, None
        case And(left=Match() as m, right=Raw() as r) | And(left=Raw() as r, right=Match() as m):
            if m.name_like is None:
                return m, _raw(r)
    return None


def _pat(m):
    # POMS's default output pattern when a job type names none.
    return _tok(m.name_like if m.name_like is not None else "%", "file pattern")


# --- the shapes POMS builds ----------------------------------------------------------------


def _poms_form(query):
    match query:
        # split_types/mod.py, mod.peek
        case Stride(source=Dataset(name=ds), stride=n, offset=i):
            return f"defname: {_tok(ds, 'dataset')} with stride {_int(n, 'stride')} offset {_int(i, 'offset')}"

        # split_types/limitn.py, limitn.peek. nfiles' first chunk ("… offset 0") and drainingn's
        # first slice ("defname: ds    with limit n ") are this same tree; limitn is the one that
        # prints it on every launch, so it wins.
        case Limit(source=Dataset(name=ds), limit=n, offset=0):
            return f"defname: {_tok(ds, 'dataset')} with limit {_int(n, 'limit')}"

        # split_types/nfiles.py, nfiles.peek
        case Limit(source=Dataset(name=ds), limit=n, offset=off):
            return f"defname: {_tok(ds, 'dataset')} with limit {_int(n, 'limit')} offset {_int(off, 'offset')}"

        # split_types/drainingn.py, drainingn.peek ("defname: %s  %s  with limit %d "). Also what
        # byexistingruns.peek lists with limit 1 ("defname:%s %s with limit 1"); drainingn wins.
        case Limit(source=Minus(left=Dataset(name=ds), right=Snapshot(snapshot_id=s)), limit=n, offset=0):
            return (
                f"defname: {_tok(ds, 'dataset')}  minus snapshot_id {_int(s, 'snapshot id')}  "
                f"with limit {_int(n, 'limit')} "
            )

        # split_types/stagedfiles.py, stagedfiles.peek, first slice (empty snapshot bit)
        case Limit(source=ProjectFiles(project=p, statuses=("consumed",)), limit=n, offset=0):
            return f"project_name {_tok(p, 'project')}  and consumed_status 'consumed'   with limit {_int(n, 'limit')} "

        # split_types/stagedfiles.py, stagedfiles.peek, later slices
        case Limit(
            source=Minus(left=ProjectFiles(project=p, statuses=("consumed",)), right=Snapshot(snapshot_id=s)),
            limit=n,
            offset=0,
        ):
            return (
                f"project_name {_tok(p, 'project')}  and consumed_status 'consumed' "
                f"minus snapshot_id {_int(s, 'snapshot id')}  with limit {_int(n, 'limit')} "
            )

        # split_types/byrun.py, byrun.peek. byexistingruns' first slice is the same tree
        # ("defname: ds   and run_number r "); byrun wins.
        case And(left=Dataset(name=ds), right=Match(run_number=r) as m) if _fields(m) == {"run_number"}:
            return f"defname: {_tok(ds, 'dataset')} and run_number {_run(r)}"

        # split_types/byexistingruns.py, byexistingruns.peek, later slices
        case And(left=Minus(left=Dataset(name=ds), right=Snapshot(snapshot_id=s)), right=Match(run_number=r) as m) if (
            _fields(m) == {"run_number"}
        ):
            return (
                f"defname: {_tok(ds, 'dataset')}  minus snapshot_id {_int(s, 'snapshot id')} and run_number {_run(r)} "
            )

        # split_types/new.py, new.peek
        case And(left=Dataset(name=ds), right=Match(end_time_after=a, end_time_until=b) as m) if _fields(m) == {
            "end_time_after",
            "end_time_until",
        }:
            return f"defname: {_tok(ds, 'dataset')} and end_time > '{_end_time(a)}' and end_time <= '{_end_time(b)}'"

        # SAMSpecifics.create_recovery_dataset, "consumed_status" (and the default)
        case Minus(left=ProjectSnapshot(project=p), right=ProjectFiles(project=p2, statuses=st)) if p == p2:
            p = _tok(p, "project")
            return f"snapshot_for_project_name {p} minus (project_name {p} and consumed_status {_statuses(st)})"

        # SAMSpecifics.create_recovery_dataset, "added_files" (no space after "defname:")
        case Minus(left=Dataset(name=ds), right=ProjectSnapshot(project=p)):
            return f"defname:{_tok(ds, 'dataset')} minus snapshot_for_project_name {_tok(p, 'project')}"

        # SAMSpecifics.create_recovery_dataset, "delivered_not_consumed" — POMS never fills in the
        # project ("project_name %s and …"); we do.
        case ProjectFiles(project=p, statuses=st):
            return f"project_name {_tok(p, 'project')} and consumed_status {_statuses(st)}"

        # SAMSpecifics.create_recovery_dataset, "pending_files"
        case Minus(left=ProjectSnapshot(project=p), right=rhs):
            return _pending_files(p, rhs)

        # SAMSpecifics.dependency_definition. get_file_stats_for_submissions' "available output"
        # is the same tree ("ischildof:(  base ) and create_date > 'C' and  pat and version 'V'"),
        # only counted and shown; the dependency dataset is the one SAM stores, so it wins.
        case And(left=ChildrenOf(source=ProjectSnapshot(project=p), depth=d), right=sel):
            return _dependency(p, d, sel)

        # SAMSpecifics.dependency_definition for approval / datatransfer stages
        # ("defname:%s" % dataset, then " and " + the pattern bits)
        case And(left=Dataset(name=ds), right=Match(name_like=pat) as m) if _fields(m) == {"name_like"}:
            return f"defname:{_tok(ds, 'dataset')} and file_name like '{_tok(pat, 'file pattern')}'"
        case And(left=Dataset(name=ds), right=Raw() as r):
            return f"defname:{_tok(ds, 'dataset')} and {_raw(r)}"

        # sam_project_checker.add_project_submission (wrapup's Located check) and
        # sam_specifics.get_file_stats_for_submissions (kids declared / located)
        case And():
            items = _flatten_and(query)
            if isinstance(items[0], ProjectSnapshot):
                return _project_children_check(items[0].project, items[1:])
    return None


def _statuses(statuses):
    if not statuses:
        raise DataHandlerError("a project file selection needs at least one consumption status")
    return ",".join(_tok(s, "consumption status") for s in statuses)


def _parents_items(node):
    """The ParentsOf(pattern) clauses of an and-chain, or None."""
    items = _flatten_and(node)
    if all(isinstance(i, ParentsOf) for i in items):
        return items
    return None


def _pending_files(project, rhs):
    # "snapshot_for_project_name P minus ( " + per pattern
    # "<sep> <isparentof:( ×depth> version V and file_name like PAT and create_date > 'C' <)×depth> ",
    # sep "" then "and", closed by ")".
    items = _parents_items(rhs)
    if not items:
        return None
    text = f"snapshot_for_project_name {_tok(project, 'project')} minus ( "
    sep = ""
    for item in items:
        parts = _pattern(item.source)
        if parts is None:
            return None
        m, raw = parts
        if not _located_or_unset(m) or _fields(m) - {"name_like", "availability"} != {"version", "created_after"}:
            return None
        opens, closes = "isparentof:( " * _depth(item.depth), ")" * item.depth
        bits = raw if raw is not None else f"file_name like {_pat(m)}"
        text += (
            f"{sep} {opens} version {_tok(m.version, 'version')} and {bits} "
            f"and create_date > '{_created(m.created_after)}' {closes} "
        )
        sep = "and"
    return text + ")"


def _located_or_unset(m):
    # POMS's pending-files and dependency dims carry no availability clause, so SAM answers them
    # with located files: "physical" prints exactly as POMS printed it.
    return m.availability in (None, "physical")


def _dependency(project, depth, sel):
    # "<ischildof:( ×depth> snapshot_for_project_name P <)×depth> and version V
    #  and create_date > 'C'" + " and " + "file_name like 'PAT'" (or the raw fragment)
    parts = _pattern(sel)
    if parts is None:
        return None
    m, raw = parts
    if not _located_or_unset(m) or _fields(m) - {"name_like", "availability"} != {"version", "created_after"}:
        return None
    if raw is None and m.name_like is None:
        return None
    bits = raw if raw is not None else f"file_name like '{_pat(m)}'"
    return (
        f"{'ischildof:( ' * _depth(depth)} snapshot_for_project_name {_tok(project, 'project')} {')' * depth} "
        f"and version {_tok(m.version, 'version')} and create_date > '{_created(m.created_after)}' and {bits}"
    )


def _project_children_check(project, items):
    # Base "snapshot_for_project_name P " (trailing blank), then one clause per item appended
    # with " and " exactly as POMS accumulates them.
    if not items:
        return None
    text = f"snapshot_for_project_name {_tok(project, 'project')} "
    for item in items:
        clause = _parent_clause(item)
        if clause is None:
            return None
        text += clause
    return text


def _parent_clause(item):
    # Availability, as POMS uses it: SAM answers with located (physical) files unless told
    # "with availability anylocation", so POMS's "kids located" carries no availability clause
    # and its "kids declared" forms say anylocation. In the algebra an unset availability does
    # not constrain, so None prints as anylocation here; "physical" prints POMS's located forms.
    if not isinstance(item, ParentsOf):
        return None
    parts = _pattern(item.source)
    if parts is None:
        return None
    m, raw = parts
    fields = _fields(m) - {"name_like", "availability"}
    has_pattern = raw is not None or m.name_like is not None
    located = m.availability == "physical"
    if m.availability not in (None, "physical", "anylocation"):
        return None
    opens, closes = "isparentof:( " * _depth(item.depth), ")" * item.depth
    if m.version is None:
        return None
    version = _tok(m.version, "version")

    if fields == {"version"} and not has_pattern:
        if located:
            # get_file_stats_for_submissions, "with kids located": "%s and %s version %s %s"
            return f" and {opens} version {version} {closes}"
        # get_file_stats_for_submissions, "with some kids declared":
        # "%s and %s version %s with availability anylocation %s"
        return f" and {opens} version {version} with availability anylocation {closes}"
    if fields == {"version", "created_after"}:
        created = _created(m.created_after)
        if located:
            # sam_project_checker.add_project_submission (wrapup's Located check): a pattern
            # without a space becomes "file_name PAT" (no "like", no quotes); two blanks
            # precede "with".
            bits = raw if raw is not None else f"file_name {_pat(m)}"
            return (
                f" and {opens} {bits} and version '{version}' and create_date > '{created}'"
                f"  with availability physical {closes} "
            )
        # get_file_stats_for_submissions, "with all kids declared"
        bits = raw if raw is not None else f"file_name like '{_pat(m)}'"
        return (
            f" and {opens} {bits} and version '{version}' and create_date > '{created}' "
            f"with availability anylocation {closes} "
        )
    return None


# --- everything else -------------------------------------------------------------------------

_ATOMS = (Dataset, Snapshot, ProjectSnapshot, ParentsOf, ChildrenOf)


def _generic(query):
    """A plain SAM rendering of any tree POMS never builds."""
    match query:
        case Dataset(name=ds):
            # POMS's bare form: count_files("defname:" + name), count_files_in_datasets,
            # add_non_project_submission, declare_approval_transfer_datasets.
            return f"defname:{_tok(ds, 'dataset')}"
        case Snapshot(snapshot_id=s):
            return f"snapshot_id {_int(s, 'snapshot id')}"
        case ProjectSnapshot(project=p):
            return f"snapshot_for_project_name {_tok(p, 'project')}"
        case Match():
            return _match(query)
        case And(left=a, right=b):
            return f"{_operand(a, in_and=True)} and {_operand(b, in_and=True)}"
        case Minus(left=a, right=b):
            return f"{_operand(a)} minus {_operand(b)}"
        case Union(parts=parts):
            # drainingn.next / byexistingruns.next accumulate "snapshot_id %s or snapshot_id %s";
            # count_files_in_datasets joins "defname:%s" with " or ".
            if not parts:
                raise DataHandlerError("SAM cannot express an empty union")
            return " or ".join(_operand(p) for p in parts)
        case Limit(source=src, limit=n, offset=off):
            text = f"{_operand(src)} with limit {_int(n, 'limit')}"
            return f"{text} offset {_int(off, 'offset')}" if off else text
        case Stride(source=src, stride=n, offset=off):
            return f"{_operand(src)} with stride {_int(n, 'stride')} offset {_int(off, 'offset')}"
        case ParentsOf(source=src, depth=d):
            return _nest("isparentof", src, d)
        case ChildrenOf(source=src, depth=d):
            return _nest("ischildof", src, d)
        case Raw():
            return _raw(query)
    raise DataHandlerError(f"samweb cannot express the query node {type(query).__name__}: {query!r}")


def _nest(op, src, depth):
    depth = _depth(depth)
    return f"{op}:( " * depth + to_dims(src).strip() + " )" * depth


def _operand(node, in_and=False):
    """`node` printed as an operand: compound operands are parenthesised, so the string means
    the tree whatever precedence SAM gives and / or / minus. Inside an "and", further "and"s
    and plain attribute matches need no parentheses (and is associative)."""
    text = to_dims(node).strip()
    if isinstance(node, _ATOMS):
        return text
    if in_and and (isinstance(node, And) or (isinstance(node, Match) and node.availability is None)):
        return text
    return f"({text})"


def _match(m):
    clauses = []
    if m.version is not None:
        clauses.append(f"version '{_tok(m.version, 'version')}'")
    if m.name_like is not None:
        clauses.append(f"file_name like '{_tok(m.name_like, 'file pattern')}'")
    if m.created_after is not None:
        clauses.append(f"create_date > '{_created(m.created_after)}'")
    if m.run_number is not None:
        clauses.append(f"run_number {_run(m.run_number)}")
    if m.end_time_after is not None:
        clauses.append(f"end_time > '{_end_time(m.end_time_after)}'")
    if m.end_time_until is not None:
        clauses.append(f"end_time <= '{_end_time(m.end_time_until)}'")
    # An unconstrained Match is every file; SAM needs some clause to say so.
    text = " and ".join(clauses) or "file_name like '%'"
    if m.availability is not None:
        text += f" with availability {_tok(m.availability, 'availability')}"
    return text
