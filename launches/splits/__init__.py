"""Split types: how successive launches of a stage walk through its dataset (POMS §4).

Each type is a class with `doc`, `parameters` and `next(stage, test)` returning
`(dataset, new_cursor)`. Only `None` and `list` exist so far; the rest are issue #4.
"""

import re


class SplitsExhausted(Exception):
    pass


class SplitError(ValueError):
    pass


class NoSplit:
    doc = "Every launch uses the stage's dataset as it is."
    parameters = ()

    def next(self, dataset, cursor):
        return dataset, cursor


class ListSplit:
    doc = "The dataset field is a comma-separated list; each launch takes the next entry."
    parameters = ()

    def next(self, dataset, cursor):
        items = [d.strip() for d in dataset.split(",") if d.strip()]
        position = cursor or 0
        if position >= len(items):
            raise SplitsExhausted(f"No more splits in this stage: all {len(items)} datasets of the list were launched.")
        return items[position], position + 1


SPLIT_TYPES = {"None": NoSplit(), "list": ListSplit()}
_SPEC = re.compile(r"^\s*(\w+)\s*(?:\((.*)\))?\s*$")


def split_type_for(spec):
    """The split type object for a stage's split spec such as `None` or `list`."""
    match = _SPEC.match(spec or "None")
    name = match.group(1) if match else spec
    if name not in SPLIT_TYPES:
        raise SplitError(f"Unknown split type {spec!r}; known: {', '.join(SPLIT_TYPES)}")
    return SPLIT_TYPES[name]
