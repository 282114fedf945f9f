"""What wrapup, recovery and dependents need to know about a submission's data: its data
handler, its output patterns, and the queries POMS builds from them (reference/poms.md §5–6)."""

from django.db.models import Q

from campaigns.models import StageDependency
from sam_adapter import query as q
from sam_adapter.backends import handler_for


def handler_of(sub):
    return handler_for(sub.experiment, sub.stage.campaign.data_handling or None)


def config_of_submission(sub):
    """The frozen configuration the submission ran with (the live stage if none was frozen)."""
    if sub.snapshot is not None:
        return sub.snapshot.content
    from campaigns.services import config_of

    return config_of(sub.stage)


def pattern_query(pattern, **match):
    """A file-name pattern as POMS allows it: SQL LIKE, or a raw SAM dims fragment if it has spaces."""
    pattern = pattern.strip().replace("%%", "%")
    if " " in pattern:
        return q.Raw("samweb", pattern)
    return q.Match(name_like=pattern, **match)


def output_patterns(sub):
    """Patterns of the outputs that matter: those the stage's dependencies consume, else the
    job type's output patterns, else everything."""
    edges = StageDependency.objects.filter(Q(upstream=sub.stage_id)).values_list("file_pattern", flat=True)
    patterns = [p for p in edges if p] or (
        config_of_submission(sub)["job_type"].get("output_file_patterns") or "%"
    ).split(",")
    return [p.strip() for p in patterns if p.strip()] or ["%"]


def located_outputs(sub, pattern):
    """Inputs of the submission's project that have located children matching `pattern`."""
    cfg = config_of_submission(sub)["stage"]
    children = _with(pattern_query(pattern), version=cfg.get("software_version") or None, created_after=sub.created,
                     availability="physical")  # fmt: skip
    return q.And(q.ProjectSnapshot(sub.params["project"]), q.ParentsOf(children, cfg.get("output_ancestor_depth") or 1))


def outputs_of(sub, pattern):
    """The submission's output files matching `pattern` (POMS dependency dims)."""
    cfg = config_of_submission(sub)["stage"]
    depth = cfg.get("output_ancestor_depth") or 1
    match = _with(pattern_query(pattern), version=cfg.get("software_version") or None, created_after=sub.created)
    return q.And(q.ChildrenOf(q.ProjectSnapshot(sub.params["project"]), depth), match)


def _with(node, **fields):
    """Add constraints to a Match; a raw fragment is ANDed with a Match of them."""
    fields = {k: v for k, v in fields.items() if v is not None}
    if isinstance(node, q.Match):
        return q.Match(**{**{f: getattr(node, f) for f in node.__dataclass_fields__}, **fields})
    return q.And(node, q.Match(**fields)) if fields else node
