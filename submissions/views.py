"""Pages and partials that show the ledger."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, OuterRef, Q, Subquery, Sum
from django.db.models.functions import TruncDate
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.utils import timezone

from campaigns.access import get_campaign_for, get_stage_for
from campaigns.models import Campaign
from poms.header import acting
from poms.lib.paging import keyset_asc, keyset_desc, page_key
from poms.lib.text import tail_file
from sam_adapter.backends import handler_for
from sam_adapter.interface import DataHandlerError

from .access import get_submission_for
from .datasets import file_statistics
from .models import ACTIVE_STATUSES, Status, Submission


@login_required
def dashboard(request):
    actor = acting(request)
    if actor.experiment is None:
        return render(request, "submissions/dashboard.html", {"experiment": None})
    if actor.role is None:
        raise PermissionDenied(f"You are not a member of experiment {actor.experiment.name}.")
    mine = Submission.objects.filter(experiment=actor.experiment)
    counts = dict(mine.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    active = (
        Campaign.objects.filter(experiment=actor.experiment)
        .annotate(
            n_active=Count("stages__submissions", filter=Q(stages__submissions__status__in=ACTIVE_STATUSES)),
            last=Max("stages__submissions__status_changed"),
        )
        .filter(n_active__gt=0)
        .order_by("-last")[:20]
    )
    failures = mine.filter(status__in=[Status.FAILED, Status.LAUNCH_FAILED]).select_related("stage", "stage__campaign")
    context = {
        "experiment": actor.experiment,
        "daily": _daily_by_status(mine, days=14),
        "counts": [(s, counts.get(s.value, 0)) for s in Status],
        "active_campaigns": list(active),
        "failures": list(failures.order_by("-status_changed")[:10]),
    }
    return render(request, "submissions/dashboard.html", context)


def _daily_by_status(subs, days):
    """Submissions launched per day and their current status, for the dashboard chart (one query)."""
    since = timezone.now() - timedelta(days=days - 1)
    start = since.date()
    rows = (
        subs.filter(created__date__gte=start)
        .annotate(day=TruncDate("created"))
        .values_list("day", "status")
        .annotate(n=Count("id"))
    )
    labels = [(start + timedelta(days=i)).isoformat() for i in range(days)]
    series = {}
    for day, status, n in rows:
        series.setdefault(Status(status).label, [0] * days)[(day - start).days] += n
    return {"labels": labels, "series": series}


@login_required
def stage_submissions(request, pk):
    """The stage page's submissions table (an htmx partial, refreshed live)."""
    stage = get_stage_for(request, pk)
    before = page_key(request.GET.get("before"))
    page = keyset_desc(stage.submissions.for_table(), before, settings.POMS_PAGE_SIZE)
    return render(request, "submissions/_stage_submissions.html", {"stage": stage, "page": page, "before": before})


@login_required
def campaign_status(request, pk):
    """Latest submission status and job counts per stage, for the overview DAG colours."""
    campaign = get_campaign_for(request, pk)
    latest = Submission.objects.filter(stage=OuterRef("pk")).order_by("-id")
    rows = campaign.stages.annotate(
        latest_id=Subquery(latest.values("id")[:1]),
        latest_status=Subquery(latest.values("status")[:1]),
        n_subs=Count("submissions"),
        n_active=Count("submissions", filter=Q(submissions__status__in=ACTIVE_STATUSES)),
        # Originals define the total; recoveries add what they consumed of it.
        files_total=Sum("submissions__files_total", filter=Q(submissions__recovery_parent=None)),
        files_consumed=Sum("submissions__files_consumed"),
    ).values("id", "latest_id", "latest_status", "n_subs", "n_active", "files_total", "files_consumed")
    stages = {
        r["id"]: {
            **r,
            "latest_label": Status(r["latest_status"]).label if r["latest_status"] else "never launched",
        }
        for r in rows
    }
    return JsonResponse({"stages": stages})


@login_required
def submission_detail(request, pk):
    sub = get_submission_for(request, pk)
    # The recovery tree: the original and every recovery of it (recovery_parent is indexed).
    root = sub.recovery_parent_id or sub.pk
    family = list(
        Submission.objects.filter(Q(pk=root) | Q(recovery_parent_id=root)).order_by("pk").only("id", "status")
    )
    context = _live_context(request, sub) | {"family": family if len(family) > 1 else []}
    return render(request, "submissions/submission_detail.html", context)


@login_required
def submission_live(request, pk):
    """Status, history and jobs of one submission: the part of its page that refreshes."""
    sub = get_submission_for(request, pk)
    return render(request, "submissions/_submission_live.html", _live_context(request, sub))


def _live_context(request, sub):
    after = page_key(request.GET.get("after"))
    jobs = keyset_asc(sub.jobs.all(), after, settings.POMS_PAGE_SIZE)
    return {"sub": sub, "history": list(sub.history.select_related("user")), "jobs": jobs, "after": after}


@login_required
def launch_log(request, pk):
    """The launch log's tail; answers 286 once the launch has ended, which stops htmx polling."""
    sub = get_submission_for(request, pk)
    done = sub.launch_finished is not None or sub.status != Status.NEW
    return render(
        request,
        "submissions/_launch_log.html",
        {"sub": sub, "log": tail_file(sub.launch_log)},
        status=286 if done else 200,
    )


FILE_LIST_LIMIT = 500


def _statistics(sub):
    return file_statistics(sub), handler_for(sub.experiment, sub.stage.campaign.data_handling or None)


@login_required
def submission_files(request, pk):
    """File accounting of one submission (an htmx partial: a slow catalogue never blocks the page)."""
    sub = get_submission_for(request, pk)
    rows, error = [], ""
    try:
        stats, handler = _statistics(sub)
        rows = [(label, handler.count(query)) for label, query in stats.items()]
    except DataHandlerError as exc:
        error = str(exc)
    return render(request, "submissions/_files.html", {"sub": sub, "rows": rows, "error": error})


@login_required
def submission_file_list(request, pk, label):
    """The files behind one number of the file accounting."""
    sub = get_submission_for(request, pk)
    stats, handler = _statistics(sub)
    if label not in stats:
        raise Http404
    try:
        names, error = handler.list_files(stats[label], limit=FILE_LIST_LIMIT), ""
    except DataHandlerError as exc:
        names, error = [], str(exc)
    context = {"sub": sub, "label": label, "names": names, "error": error, "limit": FILE_LIST_LIMIT}
    return render(request, "submissions/file_list.html", context)
