from django import forms


class LaunchForm(forms.Form):
    test = forms.BooleanField(required=False)
    dataset = forms.CharField(max_length=2000, required=False, help_text="override the split/dataset")

    def dataset_override(self):
        return self.cleaned_data.get("dataset") or None
