"""The page header's experiment and acting-role picker."""

from dataclasses import dataclass

from .models import ROLE_ORDER, Experiment, Membership, Preference, role_rank
from .permissions import actor_for


@dataclass
class Header:
    experiments: list
    experiment: object
    role: str | None
    roles: list


def header_for(request):
    """What the header shows: the user's experiments, the picked one and the allowed roles."""
    user = request.user
    if not user.is_authenticated:
        return None
    cached = getattr(request, "_poms_header", None)
    if cached:
        return cached
    actor = acting(request)
    experiments = (
        list(Experiment.objects.filter(active=True))
        if user.is_superuser
        else [m.experiment for m in Membership.objects.filter(user=user, active=True).select_related("experiment")]
    )
    cap = actor.membership_role or (ROLE_ORDER[-1] if user.is_superuser else None)
    roles = [r.value for r in ROLE_ORDER if cap and role_rank(r) <= role_rank(cap)]
    request._poms_header = Header(experiments, actor.experiment, actor.role, roles)
    return request._poms_header


def acting(request):
    """The request's actor in the experiment picked in the header (first membership by default)."""
    cached = getattr(request, "_poms_actor", None)
    if cached:
        return cached
    actor = actor_for(request.user)
    if actor.experiment is None and request.user.is_authenticated:
        first = Membership.objects.filter(user=request.user, active=True).select_related("experiment").first()
        if first is not None:
            actor = actor_for(request.user, first.experiment)
    request._poms_actor = actor
    return actor


def pick(user, experiment, role):
    """Remember the experiment and acting role `user` picked (capped by membership later)."""
    Preference.objects.update_or_create(user=user, defaults={"experiment": experiment, "role": role})
