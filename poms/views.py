from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from .header import pick
from .models import Experiment, Membership, Role


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
