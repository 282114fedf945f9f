"""byrun(low=L,high=H): one run number per launch, skipping runs the dataset has no files in."""

import uuid

from sam_adapter import query as q

from .base import SplitError, SplitType, exhausted, keywords

# How far past the cursor one launch looks for a run with files, and how many runs one count
# query covers at most (a union of run matches; SAM dims are sent in a URL, so keep them short).
LOOKAHEAD = 2000
BLOCK = 50


def runs(low, high):
    if low == high:
        return q.Match(run_number=low)
    return q.Union(tuple(q.Match(run_number=r) for r in range(low, high + 1)))


def first_run_with_files(data, source, start, high):
    """(the smallest run in start…high where `source` has files or None, the last run looked at).

    Probes the cursor's run alone first (consecutive runs with data cost one count), then ever
    wider blocks, then halves the first block that has files down to its first run. Gives up
    after LOOKAHEAD runs, so a launch never scans up to the default high of 999999."""
    low, width = start, 1
    while low <= high:
        if low - start >= LOOKAHEAD:
            return None, low - 1
        top = min(low + width - 1, high, start + LOOKAHEAD - 1)
        if data.count(q.And(source, runs(low, top))):
            while low < top:
                middle = (low + top) // 2
                if data.count(q.And(source, runs(low, middle))):
                    top = middle
                else:
                    low = middle + 1
            return low, low
        low, width = top + 1, min(width * 2, BLOCK)
    return None, high


class ByRun(SplitType):
    name = "byrun"
    syntax = "byrun(low=L,high=H)"
    parameters = ("low", "high")
    uses_data = True
    doc = (
        "One run per launch, from run low to run high inclusive (<dataset>_<uuid>_run_<r>); runs in which the "
        "dataset has no files are skipped. Defaults: low=1, high=999999. Ends after run high."
    )

    def parse(self, args):
        given = keywords(self.name, args, self.parameters)
        bounds = {"low": 1, "high": 999999}
        for key, text in given.items():
            if not (text.isascii() and text.isdigit()):
                raise SplitError(f"split type byrun: {key} must be a run number, got {text!r}")
            bounds[key] = int(text)
        if bounds["low"] > bounds["high"]:
            raise SplitError(f"split type byrun: low ({bounds['low']}) is above high ({bounds['high']})")
        return bounds

    def next(self, step):
        low, high = step.params["low"], step.params["high"]
        source = step.source(self.name)
        start = step.cursor or low
        if start > high:
            raise exhausted(f"every run up to {high} was launched.")
        run, looked = first_run_with_files(step.data, source, start, high)
        if run is None and looked < high:
            raise exhausted(
                f"{source.name} has no files in runs {start}–{looked} (byrun looks at most {LOOKAHEAD} runs ahead); "
                f"launch again when later runs have files, or set the split cursor past the gap."
            )
        if run is None:
            raise exhausted(f"{source.name} has no files in runs {start}–{high}.")
        name = f"{source.name}_{uuid.uuid4()}_run_{run}"
        step.data.define(name, q.And(source, q.Match(run_number=run)))
        return name, run + 1
