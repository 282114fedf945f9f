from django import forms


class CampaignFilterForm(forms.Form):
    """GET filters of the campaign list."""

    active = forms.ChoiceField(choices=[("active", "active"), ("inactive", "inactive"), ("all", "all")], required=False)
    owner = forms.ChoiceField(choices=[("all", "everyone"), ("mine", "mine"), ("others", "others")], required=False)
    kind = forms.ChoiceField(
        choices=[("all", "all"), ("production", "production"), ("analysis", "analysis")], required=False
    )
    q = forms.CharField(max_length=100, required=False, label="Search")
    after = forms.CharField(max_length=200, required=False)

    def filter(self, queryset, user):
        data = self.cleaned_data
        if data.get("active", "active") in ("", "active"):
            queryset = queryset.filter(active=True)
        elif data["active"] == "inactive":
            queryset = queryset.filter(active=False)
        if data.get("owner") == "mine":
            queryset = queryset.filter(creator=user)
        elif data.get("owner") == "others":
            queryset = queryset.exclude(creator=user)
        if data.get("kind") == "production":
            queryset = queryset.exclude(creator_role="analysis")
        elif data.get("kind") == "analysis":
            queryset = queryset.filter(creator_role="analysis")
        if data.get("q"):
            queryset = queryset.filter(name__icontains=data["q"])
        return queryset
