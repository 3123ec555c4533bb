import json

from django import forms

from . import registry
from .models import Experiment
from .plans import ConfigError, default_config, validate_config


MAX_SCENARIOS_FOR_RATING = 10_000
MAX_CONFIG_CHARACTERS = 200_000


def _refuse_non_finite(constant: str):
    raise ValueError(f"{constant} is not a number JSON allows; give a finite number")


class StartExperimentForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="A unique name, e.g. 'method-comparison-2026-12'.")
    preset = forms.ChoiceField(choices=registry.preset_choices, initial="cpu_demo")
    config = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 24, "cols": 90, "spellcheck": "false", "class": "vLargeTextField"}),
        required=False, max_length=MAX_CONFIG_CHARACTERS,
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
                overrides = json.loads(text, parse_constant=_refuse_non_finite)
            except json.JSONDecodeError as exc:
                raise forms.ValidationError(f"The configuration is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).")
            except ValueError as exc:  # NaN/Infinity, or an integer too long to read
                raise forms.ValidationError(f"The configuration is not valid JSON: {exc}.")
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
        config = default_config(preset)
        if preset == "personalised":
            config["weight_vectors"] = survey_weight_vectors()
        return json.dumps(config, indent=2)


def survey_weight_vectors() -> dict:
    """The newest survey weight vectors (one per subgroup) of the study that made
    the latest one, so the personalised preset starts from what people said."""
    from survey.models import WeightVector
    from survey.selectors import weight_vectors_for_training

    latest = WeightVector.objects.order_by("-created_at", "-id").first()
    if latest is None:
        return {}
    try:
        return weight_vectors_for_training(study=latest.study)
    except ValueError:
        return {}


class SendForRatingForm(forms.Form):
    model_key = forms.ChoiceField(label="Model to compare with the base model")
    n_scenarios = forms.IntegerField(min_value=1, max_value=MAX_SCENARIOS_FOR_RATING, initial=10, label="Test scenarios")
    clinicians = forms.ModelMultipleChoiceField(queryset=None, widget=forms.CheckboxSelectMultiple)
    overlap = forms.CharField(initial="all", help_text="How many clinicians rate each item: a number, or 'all'.")

    def __init__(self, *args, experiment, **kwargs):
        from django.contrib.auth import get_user_model

        from core import roles

        super().__init__(*args, **kwargs)
        evaluate = experiment.jobs.filter(kind="evaluate").first()
        models = [m for m in (evaluate.params.get("models", []) if evaluate else []) if m != "base"]
        self.fields["model_key"].choices = [(m, m) for m in models]
        # Proposed: every test scenario the experiment evaluated (its base model answered each one).
        from core.models import Response

        evaluated = Response.objects.filter(model_version__name=f"{experiment.name}/base").values("scenario_id").distinct().count()
        if evaluated:
            self.fields["n_scenarios"].initial = min(evaluated, MAX_SCENARIOS_FOR_RATING)
            self.fields["n_scenarios"].help_text = f"The experiment evaluated {evaluated} test scenarios; all of them by default."
        self.fields["clinicians"].queryset = get_user_model().objects.filter(groups__name=roles.CLINICIANS, is_active=True).order_by("username")

    def clean_overlap(self):
        value = self.cleaned_data["overlap"].strip().lower()
        if value == "all":
            return "all"
        if not value.isdecimal() or len(value) > 6 or int(value) < 1:
            raise forms.ValidationError("Give a whole number from 1 to 999,999, or 'all'.")
        return int(value)
