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


def pattern_query(pattern):
    """A file-name pattern as POMS allows it: SQL LIKE, or a raw SAM dims fragment if it has spaces."""
    pattern = pattern.strip().replace("%%", "%")
    if " " in pattern:
        return q.Raw("samweb", pattern)
    return q.Match(name_like=pattern)


def output_patterns(sub):
    """Patterns of the outputs that matter: those the stage's dependencies consume, else the
    job type's output patterns, else everything."""
    edges = StageDependency.objects.filter(Q(upstream=sub.stage_id)).values_list("file_pattern", flat=True)
    patterns = [p for p in edges if p] or (
        config_of_submission(sub)["job_type"].get("output_file_patterns") or "%"
    ).split(",")
    return [p.strip() for p in patterns if p.strip()] or ["%"]


def located_outputs(sub):
    """Inputs of the submission's project with located children for every output pattern —
    one chain of ANDs as POMS counts it (a pattern repeating the previous one is skipped)."""
    cfg = config_of_submission(sub)["stage"]
    version, depth = cfg.get("software_version") or None, cfg.get("output_ancestor_depth") or 1
    found, previous = q.ProjectSnapshot(sub.params["project"]), None
    for pattern in output_patterns(sub):
        if pattern == previous:
            continue
        previous = pattern
        children = with_constraints(
            pattern_query(pattern), version=version, created_after=sub.created, availability="physical"
        )
        found = q.And(found, q.ParentsOf(children, depth))
    return found


def outputs_of(sub, pattern):
    """The submission's located output files matching `pattern` (POMS dependency dims, which SAM
    answers with located files only: they carry no availability clause)."""
    cfg = config_of_submission(sub)["stage"]
    depth = cfg.get("output_ancestor_depth") or 1
    match = with_constraints(
        pattern_query(pattern),
        version=cfg.get("software_version") or None,
        created_after=sub.created,
        availability="physical",
    )
    return q.And(q.ChildrenOf(q.ProjectSnapshot(sub.params["project"]), depth), match)


def with_constraints(node, **fields):
    """Add constraints to a Match; a raw fragment is ANDed with a Match of them."""
    fields = {k: v for k, v in fields.items() if v is not None}
    if isinstance(node, q.Match):
        return q.Match(**{**{f: getattr(node, f) for f in node.__dataclass_fields__}, **fields})
    return q.And(node, q.Match(**fields)) if fields else node


def file_statistics(sub):
    """POMS's file statistics of one submission (reference/poms.md §11): label → query.

    Empty without a project (nothing was handed out through the catalogue/SAM).
    """
    project = sub.params.get("project")
    if not project:
        return {}
    cfg = config_of_submission(sub)["stage"]
    version, depth = cfg.get("software_version") or None, cfg.get("output_ancestor_depth") or 1
    base = q.ProjectSnapshot(project)
    patterns = output_patterns(sub)
    all_kids = base
    for pattern in patterns:
        all_kids = q.And(
            all_kids,
            q.ParentsOf(with_constraints(pattern_query(pattern), version=version, created_after=sub.created), depth),
        )
    kids_located = q.And(base, q.ParentsOf(q.Match(version=version, availability="physical"), depth))
    outputs = None
    for pattern in patterns:
        part = outputs_of(sub, pattern)
        outputs = part if outputs is None else q.Union((outputs, part))
    return {
        "Submitted": base,
        "Delivered": q.ProjectFiles(project, (q.CONSUMED, q.COMPLETED, q.CANCELLED, q.FAILED, q.SKIPPED, q.DELIVERED)),
        "Consumed": q.ProjectFiles(project, (q.CONSUMED_LIKE,)),
        "Failed": q.ProjectFiles(project, (q.FAILED,)),
        "Skipped": q.ProjectFiles(project, (q.SKIPPED,)),
        "Unknown": q.ProjectFiles(project, (q.UNKNOWN,)),
        "With some kids declared": q.And(base, q.ParentsOf(q.Match(version=version), depth)),
        "With all kids declared": all_kids,
        "With kids located": kids_located,
        "Pending": q.Minus(base, kids_located),
        "Available output": outputs,
    }
