"""The one place the permission rules live (DESIGN §8).

Access helpers per object type (`campaigns.access.get_stage_for`, …) fetch an object and ask
`check()`; views never test roles themselves.
"""

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.http import Http404

from .models import ROLE_ORDER, Experiment, Membership, Preference, Role, role_rank

NEEDS = ("view", "modify", "act")


@dataclass(frozen=True)
class Actor:
    """Who is asking, in which experiment, under which acting role."""

    user: object
    experiment: Experiment | None
    role: str | None  # acting role in `experiment`, None when not a member
    membership_role: str | None

    @property
    def is_root(self):
        return bool(self.user and self.user.is_superuser)


def memberships_of(user):
    return {m.experiment_id: m for m in Membership.objects.filter(user=user, active=True).select_related("experiment")}


def actor_for(user, experiment=None, *, picked=True):
    """The actor for `user`; `experiment` defaults to the one picked in the header. `picked`:
    whether the role picked in the header applies (a browser setting; API tokens do without)."""
    if user is None or not user.is_authenticated:
        return Actor(None, experiment, None, None)
    pref = Preference.objects.filter(user=user).select_related("experiment").first() if picked else None
    if experiment is None and pref is not None:
        experiment = pref.experiment
    membership = None
    if experiment is not None:
        membership = Membership.objects.filter(user=user, experiment=experiment, active=True).first()
    if membership is None:
        role = Role.SUPERUSER if user.is_superuser and experiment is not None else None
        return Actor(user, experiment, role, None)
    wanted = pref.role if pref is not None and pref.experiment_id == experiment.id else membership.role
    role = ROLE_ORDER[min(role_rank(wanted), role_rank(membership.role))]
    return Actor(user, experiment, role, membership.role)


def token_actor(user, experiment):
    """The actor behind an API token: the membership's own role. The role picked in the page
    header is a browser setting; a cron job's calls must not change with it."""
    return actor_for(user, experiment, picked=False)


def actor_as(user, experiment, role):
    """The actor `user` was when they asked for something earlier (e.g. a queued launch),
    capped by the membership they hold now."""
    now = actor_for(user, experiment)
    if now.role is None or now.is_root:
        return now
    capped = ROLE_ORDER[min(role_rank(role), role_rank(now.membership_role))]
    return Actor(user, experiment, capped, now.membership_role)


def request_actor(request, experiment):
    """Actor for a request acting on an object of `experiment` (cached per request)."""
    cache = request.__dict__.setdefault("_poms_actors", {})
    if experiment.id not in cache:
        cache[experiment.id] = actor_for(request.user, experiment)
    return cache[experiment.id]


def allowed(actor, need, *, creator_id, creator_role):
    """May `actor` view / modify / act on an object with this ownership?"""
    if need not in NEEDS:
        raise ValueError(need)
    if actor.user is None:
        return False
    if actor.is_root:
        return True
    if actor.role is None:
        return False
    if need == "view":
        return True
    if actor.role == Role.SUPERUSER:
        return True
    same_role = creator_role == actor.role
    if actor.role == Role.ANALYSIS:
        same_role = same_role and creator_id == actor.user.id
    if need == "modify":
        return same_role and actor.role != Role.SHIFTER
    # act: shifters run production objects but may not edit them.
    return same_role or (actor.role == Role.SHIFTER and creator_role == Role.PRODUCTION)


REFUSALS = {
    "view": "You are not a member of experiment {exp}.",
    "modify": "Your acting role ({role}) may not edit this {kind}, created under the {owner} role.",
    "act": "Your acting role ({role}) may not launch or control this {kind}, created under the {owner} role.",
}


def check(request, obj, need, *, kind):
    """Raise PermissionDenied with a clear message unless the request may `need` on `obj`."""
    actor = request_actor(request, obj.experiment)
    if actor.user is not None and actor.role is None:
        # Not a member: answered as if the object did not exist, so walking ids reveals nothing.
        raise Http404(f"No such {kind}.")
    if not allowed(actor, need, creator_id=obj.creator_id, creator_role=obj.creator_role):
        need_shown = "view" if actor.role is None else need
        raise PermissionDenied(
            REFUSALS[need_shown].format(exp=obj.experiment.name, role=actor.role, kind=kind, owner=obj.creator_role)
        )
    return actor
