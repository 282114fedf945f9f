"""Split types: how successive launches of a stage walk through its dataset (POMS §4).

A stage's `split_type` (or `test_split_type` for test launches — with the same cursor, as in
POMS) names a type and its parameters, e.g. `mod(4)`, `byrun(low=2,high=9)`, `new(window=6h)`;
whitespace is ignored and `name_n` is read as `name(n)`, as POMS did. `next_split()` returns the
dataset a launch gets and the stage's new cursor; types that slice data define the slice as a
named dataset through the campaign's DataHandler, using only `sam_adapter.query` trees.
"""

import re
import time

from .base import Data, SplitError, SplitsExhausted, SplitType, Step
from .runs import ByRun
from .simple import Draining, ListSplit, MultiParam, NoSplit
from .slicing import LimitN, Mod, NFiles
from .snapshots import ByExistingRuns, DrainingN, StagedFiles
from .window import New, NewLocal

__all__ = [
    "SPLIT_TYPES", "SplitError", "SplitsExhausted", "SplitType", "canonical", "describe", "next_split", "parse",
    "spec_of", "split_type_for",
]  # fmt: skip

SPLIT_TYPES = {
    kind.name: kind
    for kind in (
        NoSplit(), Draining(), ListSplit(), MultiParam(), Mod(), NFiles(), LimitN(), DrainingN(), StagedFiles(),
        ByRun(), ByExistingRuns(), New(), NewLocal(),
    )
}  # fmt: skip
_BY_LOWER = {name.lower(): kind for name, kind in SPLIT_TYPES.items()}
# name, then an optional legacy `_<n>`, then optional (parameters); whitespace is removed first.
_SPEC = re.compile(r"(?P<name>[A-Za-z][A-Za-z_]*?)(?:_(?P<number>\d+))?(?:\((?P<args>[^()]*)\))?")


def parse(spec):
    """(split type, parameters) for a spec such as `mod( 4 )`; SplitError names what is wrong."""
    text = re.sub(r"\s+", "", spec or "")
    if not text:
        return SPLIT_TYPES["None"], {}
    match = _SPEC.fullmatch(text)
    if match is None:
        raise SplitError(f"cannot read the split type {spec!r}: write a name, or name(parameters) as in mod(4)")
    kind = _BY_LOWER.get(match["name"].lower())
    if kind is None:
        raise SplitError(f"unknown split type {match['name']!r}; known: {', '.join(SPLIT_TYPES)}")
    args = match["args"]
    if match["number"] is not None:
        if not kind.takes_number or args is not None:
            raise SplitError(f"cannot read the split type {spec!r}; write it as {kind.syntax}")
        args = match["number"]
    return kind, kind.parse(args)


def split_type_for(spec):
    """The split type object a spec names (the spec is validated)."""
    return parse(spec)[0]


def canonical(spec):
    """A spec with whitespace removed and `none`/empty spelled `None`, for comparing specs."""
    text = re.sub(r"\s+", "", spec or "")
    return "None" if text.lower() in ("", "none") else text


def spec_of(stage, test):
    """The split a launch uses: test launches use test_split_type when it is set."""
    return stage.test_split_type if test and (stage.test_split_type or "").strip() else stage.split_type


def next_split(stage, *, test=False, handler=None, dry=False, now=None, dataset=None):
    """(dataset, new cursor) for the next launch of `stage`. The caller stores the cursor.

    `handler` is the campaign's DataHandler or a callable making it (only called by types that
    query data). `dry`: define and snapshot nothing; the cursor returned must then be ignored.
    `dataset`: the stage's dataset as the caller expanded it (campaign keywords), if it did.
    Raises SplitsExhausted, SplitError, or the handler's DataHandlerError.
    """
    kind, params = parse(spec_of(stage, test))
    source = stage.dataset if dataset is None else dataset
    step = Step(source or "", stage.split_cursor, params, Data(handler, dry), time.time() if now is None else now)
    return kind.next(step)


def describe():
    """Every split type for the editor and help pages: name, syntax, parameters, documentation."""
    return [
        {
            "name": kind.name,
            "syntax": kind.syntax,
            "parameters": list(kind.parameters),
            "doc": kind.doc,
            "uses_data": kind.uses_data,
            "has_cursor": kind.has_cursor,
        }
        for kind in SPLIT_TYPES.values()
    ]
