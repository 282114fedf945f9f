"""The permission matrix of DESIGN §8: every action × every role, through HTTP and the rule."""

import pytest
from django.urls import reverse

from campaigns.models import Stage
from launches.models import LaunchHold
from poms.models import Role
from poms.permissions import Actor, allowed
from tests.factories import SubmissionFactory, UserFactory

pytestmark = pytest.mark.django_db

WHO = ["analysis", "production-shifter", "production", "superuser", "non-member", "anonymous"]

# action → expected HTTP status per WHO entry (302 for a successful POST, which redirects; 404 for
# a non-member asking about an object: whether it exists is not theirs to learn)
MATRIX = {
    "campaign list": [200, 200, 200, 200, 403, 302],
    "view production stage": [200, 200, 200, 200, 404, 302],
    "view submission": [200, 200, 200, 200, 404, 302],
    "stage submissions table": [200, 200, 200, 200, 404, 302],
    "dry run production stage": [403, 200, 200, 200, 404, 302],
    "launch production stage": [403, 302, 302, 302, 404, 302],
    "launch analysis stage": [302, 403, 403, 302, 404, 302],
    "confirm kill production submission": [403, 200, 200, 200, 404, 302],
    "kill production submission": [403, 302, 302, 302, 404, 302],
    "kill production stage": [403, 302, 302, 302, 404, 302],
    "hold production campaign": [403, 302, 302, 302, 404, 302],
    "relaunch production submission": [403, 302, 302, 302, 404, 302],
    "launch production campaign": [403, 302, 302, 302, 404, 302],
    "queue production stage": [403, 302, 302, 302, 404, 302],
    "approve production submission": [403, 302, 302, 302, 404, 302],
    "queued launches page": [200, 200, 200, 200, 403, 302],
    "hold all launches": [403, 403, 403, 302, 403, 302],
    "abort production submission": [403, 302, 302, 302, 404, 302],
    "kick production submission": [403, 302, 302, 302, 404, 302],
    "recover production submission": [403, 302, 302, 302, 404, 302],
    "file accounting": [200, 200, 200, 200, 404, 302],
    "api tokens page": [200, 200, 200, 200, 200, 302],
}


def request_for(world, action, sub):
    prod, ana = world.production_stage, world.analysis_stage
    return {
        "campaign list": ("get", reverse("campaigns:list")),
        "view production stage": ("get", reverse("campaigns:stage", args=[prod.pk])),
        "view submission": ("get", reverse("submissions:detail", args=[sub.pk])),
        "stage submissions table": ("get", reverse("submissions:stage_table", args=[prod.pk])),
        "dry run production stage": ("get", reverse("launches:dry_run", args=[prod.pk])),
        "launch production stage": ("post", reverse("launches:launch", args=[prod.pk])),
        "launch analysis stage": ("post", reverse("launches:launch", args=[ana.pk])),
        "confirm kill production submission": ("get", reverse("launches:control", args=["submission", sub.pk, "kill"])),
        "kill production submission": ("post", reverse("launches:control", args=["submission", sub.pk, "kill"])),
        "kill production stage": ("post", reverse("launches:control", args=["stage", prod.pk, "kill"])),
        "hold production campaign": ("post", reverse("launches:control", args=["campaign", prod.campaign_id, "hold"])),
        "relaunch production submission": ("post", reverse("launches:relaunch", args=[sub.pk])),
        "launch production campaign": ("post", reverse("launches:launch_campaign", args=[prod.campaign_id])),
        "queue production stage": (
            "post",
            reverse("launches:stage_holds", args=[prod.campaign_id]),
            {"mode": "queue", "stages": [prod.pk]},
        ),
        "approve production submission": ("post", reverse("launches:approval", args=[sub.pk, "approve"])),
        "queued launches page": ("get", reverse("launches:held")),
        "hold all launches": ("post", reverse("launches:switch", args=["hold"])),
        "abort production submission": ("post", reverse("launches:abort", args=[sub.pk])),
        "kick production submission": ("post", reverse("launches:kick", args=[sub.pk, "completed"])),
        "recover production submission": (
            "post",
            reverse("launches:recover", args=[sub.pk]),
            {"recovery_type": "consumed_status"},
        ),
        "file accounting": ("get", reverse("submissions:files", args=[sub.pk])),
        "api tokens page": ("get", reverse("api_tokens")),
    }[action]


@pytest.mark.parametrize("action", MATRIX)
def test_permission_matrix(world, action):
    for who, expected in zip(WHO, MATRIX[action], strict=True):
        sub = SubmissionFactory(stage=world.production_stage)  # fresh: a kill is final
        method, url, *data = request_for(world, action, sub)
        response = getattr(world.client(who), method)(url, *data)
        assert response.status_code == expected, f"{action} as {who}: {response.status_code} != {expected}"
        if who == "anonymous":
            assert response["Location"].startswith(reverse("login"))
        elif expected == 302 and action.startswith("kill"):
            sub.refresh_from_db()
            assert sub.get_status_display() == "Removed"
        world.production_stage.refresh_from_db()
        Stage.objects.filter(pk=world.production_stage.pk).update(hold_by=None)  # undo a queue
        LaunchHold.objects.all().delete()


def test_a_refusal_says_why(world):
    response = world.client("analysis").post(reverse("launches:launch", args=[world.production_stage.pk]))
    assert response.status_code == 403
    assert b"Your acting role (analysis) may not launch or control this stage" in response.content
    assert not world.production_stage.submissions.exists()


def test_the_acting_role_is_capped_by_membership(world):
    analyst = world.client("analysis")
    analyst.post(reverse("pick"), {"experiment": "nova", "role": "production"})
    assert analyst.post(reverse("launches:launch", args=[world.production_stage.pk])).status_code == 403


def test_a_production_user_acting_as_analysis_cannot_launch_production(world):
    prod = world.client("production")
    prod.post(reverse("pick"), {"experiment": "nova", "role": "analysis"})
    assert prod.post(reverse("launches:launch", args=[world.production_stage.pk])).status_code == 403
    prod.post(reverse("pick"), {"experiment": "nova", "role": "production"})
    assert prod.post(reverse("launches:launch", args=[world.production_stage.pk])).status_code == 302


def test_picking_an_experiment_you_are_not_in_is_refused(world):
    from tests.factories import ExperimentFactory

    ExperimentFactory(name="dune")
    response = world.client("production").post(reverse("pick"), {"experiment": "dune", "role": "production"})
    assert response.status_code == 403


def test_root_acts_everywhere(world):
    root = UserFactory(username="root", is_superuser=True)
    client = world.client("anonymous")
    client.force_login(root)
    assert client.post(reverse("launches:launch", args=[world.production_stage.pk])).status_code == 302


# The rule itself, for the `modify` need that has no page yet (the editor is a later issue).
OWNERSHIP = {
    "own production": ("production", True),
    "own analysis": ("analysis", True),
    "other analysis": ("analysis", False),
}
MODIFY = {
    # acting role: (own production object, own analysis object, someone else's analysis object)
    Role.ANALYSIS: (False, True, False),
    Role.SHIFTER: (False, False, False),
    Role.PRODUCTION: (True, False, False),
    Role.SUPERUSER: (True, True, True),
}
ACT = {
    Role.ANALYSIS: (False, True, False),
    Role.SHIFTER: (True, False, False),
    Role.PRODUCTION: (True, False, False),
    Role.SUPERUSER: (True, True, True),
}


@pytest.mark.parametrize("need, table", [("modify", MODIFY), ("act", ACT)])
@pytest.mark.parametrize("role", list(MODIFY))
def test_the_rule_for_modify_and_act(need, table, role):
    me, other = UserFactory(), UserFactory()
    actor = Actor(me, None, role, role)
    got = tuple(
        allowed(actor, need, creator_id=(me.id if mine else other.id), creator_role=creator_role)
        for creator_role, mine in OWNERSHIP.values()
    )
    assert got == table[role]
    assert allowed(actor, "view", creator_id=other.id, creator_role="production")
    assert not allowed(Actor(me, None, None, None), "view", creator_id=me.id, creator_role="production")
    assert not allowed(Actor(None, None, None, None), "view", creator_id=me.id, creator_role="production")
