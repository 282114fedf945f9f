from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from .header import pick
from .lib.paging import page_key
from .models import ApiToken, Experiment, Membership, Role
from .tokens import create_api_token


class PickForm(forms.Form):
    experiment = forms.ModelChoiceField(queryset=Experiment.objects.filter(active=True), to_field_name="name")
    role = forms.ChoiceField(choices=Role.choices)
    next = forms.CharField(required=False)


@login_required
@require_POST
def pick_context(request):
    """The header picker: remember experiment + acting role for this user."""
    form = PickForm(request.POST)
    if not form.is_valid():
        raise PermissionDenied("Pick an experiment and a role you hold.")
    experiment = form.cleaned_data["experiment"]
    if (
        not request.user.is_superuser
        and not Membership.objects.filter(user=request.user, experiment=experiment).exists()
    ):
        raise PermissionDenied(f"You are not a member of experiment {experiment.name}.")
    pick(request.user, experiment, form.cleaned_data["role"])
    target = form.cleaned_data["next"]
    safe = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()})
    return redirect(target if target and safe else "submissions:dashboard")


@login_required
def api_tokens(request):
    """Personal API tokens: create (shown once), list, revoke."""
    created = None
    if request.method == "POST":
        if "revoke" in request.POST:
            key = page_key(request.POST.get("revoke"))
            if key is not None and ApiToken.objects.filter(user=request.user, pk=key).delete()[0]:
                messages.success(request, "Token revoked.")
            else:
                messages.error(request, "No such token of yours; nothing was revoked.")
            return redirect("api_tokens")
        name = request.POST.get("name", "").strip()[:100]
        if not name:
            messages.error(request, "Give the token a name, e.g. the machine or script that will use it.")
            return redirect("api_tokens")
        _, created = create_api_token(request.user, name)
    tokens = ApiToken.objects.filter(user=request.user).order_by("-created")
    return render(request, "poms/api_tokens.html", {"tokens": tokens, "created": created})
