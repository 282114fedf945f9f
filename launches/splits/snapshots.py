"""Splits that remember what they delivered in a snapshot: drainingn(n), stagedfiles(n), byexistingruns().

The cursor is the id of a snapshot of every file handed out so far. After each slice POMS
snapshots the slice, defines `…_full_…` as the union of the old cursor snapshot and the new
one, and snapshots that as the new cursor; the next slice is "the source minus the cursor".
Files added to the source later are therefore picked up by later launches. Unlike POMS, the
slice itself is defined as its snapshot, so the job gets exactly the files the cursor records.
"""

from sam_adapter import query as q

from .base import NumberSplit, SplitType, exhausted


def undelivered(source, cursor):
    return q.Minus(source, q.Snapshot(cursor)) if cursor else source


def deliver(step, slice_name, batch, full_name):
    """Define the slice as the files `batch` names now, and return the new cursor: a snapshot of
    the old cursor's files plus this slice's.

    The slice is a snapshot, not the query: a job starts its project later, and a source that
    gained a file meanwhile would otherwise hand the job other files than the cursor records
    (POMS defines the live query, so a growing dataset loses one file and repeats another)."""
    if step.data.dry:
        return step.cursor
    fresh = step.data.snapshot(batch)
    step.data.define(slice_name, q.Snapshot(fresh))
    if not step.cursor:
        return fresh
    step.data.define(full_name, q.Union((q.Snapshot(step.cursor), q.Snapshot(fresh))))
    return step.data.snapshot(q.Dataset(full_name))


class DrainingN(NumberSplit):
    name = "drainingn"
    syntax = "drainingn(n)"
    uses_data = True
    doc = (
        "At most n files not delivered before, per launch (<dataset>_slice_<snapshot>_stage_<n>); what was "
        "delivered is kept in a snapshot, so it suits datasets that grow or change. Ends when nothing is left."
    )

    def next(self, step):
        n, source = step.params["n"], step.source(self.name)
        last = step.cursor or 0
        batch = q.Limit(undelivered(source, last), n)
        if not step.data.count(batch):
            raise exhausted(f"every file of {source.name} was already delivered by drainingn({n}).")
        name = f"{source.name}_slice_{last}_stage_{n}"
        return name, deliver(step, name, batch, f"{source.name}_full_{last}_stage_{n}_{int(step.now)}")


class StagedFiles(NumberSplit):
    name = "stagedfiles"
    syntax = "stagedfiles(n)"
    uses_data = True
    doc = (
        "The dataset field names a (prestaging) project. Each launch takes at most n files that project has "
        "consumed and no earlier launch took (<project>_slice_<snapshot>_stage_<n>). Ends when none are left."
    )

    def next(self, step):
        n = step.params["n"]
        project = step.source(self.name).name
        last = step.cursor or 0
        batch = q.Limit(undelivered(q.ProjectFiles(project, (q.CONSUMED,)), last), n)
        if not step.data.count(batch):
            raise exhausted(f"project {project} has no consumed files that were not delivered already.")
        name = f"{project}_slice_{last}_stage_{n}"
        return name, deliver(step, name, batch, f"{project}_full_{last}_stage_{n}")


class ByExistingRuns(SplitType):
    name = "byexistingruns"
    syntax = "byexistingruns()"
    uses_data = True
    doc = (
        "One run per launch, taken from the data: the run of the first file not delivered yet, and all the "
        "undelivered files of that run (<dataset>_slice_<snapshot>_run_<run>). Ends when every file was delivered."
    )

    def next(self, step):
        source = step.source(self.name)
        last = step.cursor or 0
        rest = undelivered(source, last)
        first = step.data.first_file(rest)
        if first is None:
            raise exhausted(f"every file of {source.name} was already delivered by byexistingruns().")
        run = step.data.run_of(first)
        name = f"{source.name}_slice_{last}_run_{run}"
        return name, deliver(step, name, q.And(rest, q.Match(run_number=run)), f"{source.name}_full_{last}_run_{run}")
