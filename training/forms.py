import json

from django import forms

from .models import Experiment
from .plans import ConfigError, default_config, validate_config


class StartExperimentForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="A unique name, e.g. 'method-comparison-2026-12'.")
    preset = forms.ChoiceField(choices=Experiment.Preset.choices, initial=Experiment.Preset.CPU_DEMO)
    config = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 24, "cols": 90, "spellcheck": "false", "class": "vLargeTextField"}),
        required=False,
        help_text="JSON settings that override the preset's defaults. Leave empty to use the defaults shown.",
    )

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if Experiment.objects.filter(name=name).exists():
            raise forms.ValidationError(f"An experiment named {name!r} already exists.")
        return name

    def clean(self):
        cleaned = super().clean()
        preset = cleaned.get("preset")
        text = (cleaned.get("config") or "").strip()
        overrides = {}
        if text:
            try:
                overrides = json.loads(text)
            except json.JSONDecodeError as exc:
                raise forms.ValidationError(f"The configuration is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).")
            if not isinstance(overrides, dict):
                raise forms.ValidationError("The configuration must be a JSON object.")
        if overrides.get("preset", preset) != preset:
            raise forms.ValidationError("The preset in the configuration differs from the preset chosen above.")
        try:
            cleaned["checked_config"] = validate_config({**overrides, "preset": preset}).to_dict()
        except ConfigError as exc:
            raise forms.ValidationError([forms.ValidationError(message) for message in exc.messages])
        return cleaned

    @staticmethod
    def defaults_json(preset: str) -> str:
        return json.dumps(default_config(preset), indent=2)
