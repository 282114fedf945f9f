"""Fixed slices of a dataset: mod(n), nfiles(n), limitn(n)."""

import uuid

from sam_adapter import query as q

from .base import NumberSplit, exhausted


class Mod(NumberSplit):
    name = "mod"
    syntax = "mod(n)"
    uses_data = True
    doc = (
        "Cuts the dataset into n interleaved slices (every n-th file, offset 0…n-1), one per launch: "
        "<dataset>_slice<i>_of_<n>. Ends after the n-th slice."
    )

    def next(self, step):
        n, source = step.params["n"], step.source(self.name)
        i = step.cursor or 0
        if i >= n:
            raise exhausted(f"all {n} slices of mod({n}) were launched.")
        name = f"{source.name}_slice{i}_of_{n}"
        step.data.define(name, q.Stride(source, n, i))
        return name, i + 1


class NFiles(NumberSplit):
    name = "nfiles"
    syntax = "nfiles(n)"
    uses_data = True
    doc = (
        "Consecutive chunks of n files, one per launch: <dataset>_slice<i>_files<n> holds files i·n … i·n+n-1. "
        "Ends when a chunk would be empty."
    )

    def next(self, step):
        n, source = step.params["n"], step.source(self.name)
        i = step.cursor or 0
        chunk = q.Limit(source, n, i * n)
        # Count before defining: an empty chunk ends the split and leaves no stray definition behind.
        if not step.data.count(chunk):
            raise exhausted(f"{source.name} has no files past the first {i * n}, so chunk {i} of nfiles({n}) is empty.")
        name = f"{source.name}_slice{i}_files{n}"
        step.data.define(name, chunk)
        return name, i + 1


class LimitN(NumberSplit):
    name = "limitn"
    syntax = "limitn(n)"
    uses_data = True
    has_cursor = False
    doc = (
        "At most n files of the dataset, the same ones every launch (<dataset>_<uuid>_limit<n>); useful for "
        "analysis users who want a small sample. Ends only if the dataset is empty."
    )

    def next(self, step):
        n, source = step.params["n"], step.source(self.name)
        sample = q.Limit(source, n)
        if not step.data.count(sample):
            raise exhausted(f"{source.name} has no files.")
        name = f"{source.name}_{uuid.uuid4()}_limit{n}"
        step.data.define(name, sample)
        return name, step.cursor
