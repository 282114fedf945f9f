"""Split types that never ask the data handler: None, draining, list, multiparam."""

import json
import math

from .base import SplitError, SplitType, exhausted


class NoSplit(SplitType):
    name = "None"
    syntax = "None"
    has_cursor = False
    doc = "No splitting: every launch uses the stage's dataset as it is. Also written `none`, or left empty."

    def next(self, step):
        return step.dataset, step.cursor


class Draining(NoSplit):
    name = "draining"
    syntax = "draining"
    doc = (
        "Every launch uses the stage's dataset unchanged. Give it a self-draining dataset — one whose "
        "definition leaves out what was already processed — so each launch gets only new files."
    )


class ListSplit(SplitType):
    name = "list"
    syntax = "list"
    doc = (
        "The dataset field is a comma-separated list (ds1,ds2,ds3); each launch takes the next entry. "
        "No data handling is involved, so the entries may be any parameter values. Ends after the last."
    )

    def next(self, step):
        items = [d.strip() for d in step.dataset.split(",") if d.strip()]
        position = step.cursor or 0
        if position >= len(items):
            raise exhausted(f"all {len(items)} datasets of the list were launched.")
        return items[position], position + 1


class MultiParam(SplitType):
    name = "multiparam"
    syntax = "multiparam"
    doc = (
        'The dataset field is a JSON list of lists, e.g. [["electron","muon"],["1GeV","3GeV"]]; each launch '
        "takes the next combination joined with _ , the first list varying fastest (electron_1GeV, muon_1GeV, "
        "electron_3GeV, …). Ends after every combination."
    )

    def next(self, step):
        lists = self._lists(step.dataset)
        total = math.prod(len(values) for values in lists)
        position = step.cursor or 0
        if position >= total:
            raise exhausted(f"all {total} combinations of the multiparam lists were launched.")
        parts, rest = [], position
        for values in lists:
            parts.append(values[rest % len(values)])
            rest //= len(values)
        return "_".join(parts), position + 1

    @staticmethod
    def _lists(text):
        try:
            lists = json.loads(text)
        except ValueError as exc:
            raise SplitError(f"multiparam: the dataset field is not JSON ({exc})") from None
        if (
            not isinstance(lists, list)
            or not lists
            or not all(isinstance(values, list) and values for values in lists)
            or not all(isinstance(v, str | int | float) for values in lists for v in values)
        ):
            raise SplitError("multiparam: the dataset field must be a JSON list of non-empty lists of values")
        return [[str(v) for v in values] for values in lists]
