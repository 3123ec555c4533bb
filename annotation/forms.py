"""Researcher forms (admin): create a study, import judge decisions."""
from django import forms
from django.contrib.auth import get_user_model

from core import roles
from core.models import CriteriaSet, ModelVersion, Response, Scenario


def scenario_search_widget():
    """The admin's autocomplete over the scenario admin's search (text, topics, risk level),
    instead of a list of every scenario in the bank."""
    from django.contrib import admin
    from django.contrib.admin.widgets import AutocompleteSelectMultiple

    from .models import RatingItem

    return AutocompleteSelectMultiple(RatingItem._meta.get_field("scenario"), admin.site,
                                      attrs={"data-placeholder": "Search scenarios", "style": "width: 40em"})


def scenario_counts() -> str:
    """"172 scenarios (43 in the test split); risk: none 137, low 20, ..." for the help text."""
    from django.db.models import Count

    total = Scenario.objects.count()
    by_risk = dict(Scenario.objects.values_list("risk_level").annotate(n=Count("id")))
    test = Scenario.objects.filter(split=Scenario.Split.TEST).count()
    risks = ", ".join(f"{label.lower()} {by_risk.get(value, 0)}" for value, label in Scenario.RiskLevel.choices)
    return f"{total} scenarios ({test} in the test split); risk: {risks}."


class RatingStudyCreateForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="For researchers only; clinicians never see it.")
    public_title = forms.CharField(
        max_length=200, required=False, help_text="What clinicians see (default 'Response comparison'). Never name the models."
    )
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    source_a = forms.ModelChoiceField(queryset=ModelVersion.objects.order_by("name"))
    source_b = forms.ModelChoiceField(queryset=ModelVersion.objects.order_by("name"))
    sample_index = forms.IntegerField(min_value=0, max_value=10_000, initial=0,
                                      help_text="Which sample of each source's responses to show.")
    criteria_set = forms.ModelChoiceField(queryset=CriteriaSet.objects.order_by("name"))
    include_overall = forms.BooleanField(required=False, initial=True, label="Add the 'overall' dimension")
    scenarios = forms.ModelMultipleChoiceField(
        queryset=Scenario.objects.order_by("id"), required=False,
        help_text="Leave empty to take scenarios that have responses from both sources (filtered and limited below).",
    )
    SCENARIO_SEARCH_HELP = ("Search by words of the text, a topic or a risk level (none, low, moderate, high); "
                            "leave empty to take scenarios that have responses from both sources (filtered and limited below).")
    scenario_split = forms.ChoiceField(
        choices=[("", "any split")] + list(Scenario.Split.choices), required=False, initial=Scenario.Split.TEST
    )
    scenario_limit = forms.IntegerField(
        min_value=1, max_value=100000, required=False, initial=100,
        help_text="At most this many (a random sample drawn from the study's secret seed).",
    )
    clinicians = forms.ModelMultipleChoiceField(queryset=get_user_model().objects.none(), widget=forms.CheckboxSelectMultiple)
    overlap = forms.CharField(initial="all", help_text="How many clinicians rate each item: 'all', or a number k.")
    keep_source_order = forms.BooleanField(
        required=False, label="Keep the sources as labelled",
        help_text="Unticked (recommended), a coin from the study's secret seed decides which source is labelled A.",
    )
    open_now = forms.BooleanField(required=False, label="Open the study to clinicians now")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["scenarios"].widget = scenario_search_widget()
        self.fields["scenarios"].widget.choices = self.fields["scenarios"].choices  # a field sets this only on its own widget
        self.fields["scenarios"].help_text = f"{scenario_counts()} {self.SCENARIO_SEARCH_HELP}"
        self.fields["clinicians"].queryset = (
            get_user_model().objects.filter(groups__name=roles.CLINICIANS, is_active=True)
            .exclude(is_staff=True).exclude(is_superuser=True).exclude(groups__name=roles.RESEARCHERS)
            .distinct().order_by("username")
        )

    def selected_scenarios(self) -> list:
        """The scenarios to sample from: those chosen, or every scenario with a
        response from both sources (the service draws the sample)."""
        data = self.cleaned_data
        if data["scenarios"]:
            return list(data["scenarios"])
        both = Response.objects.filter(model_version=data["source_a"], sample_index=data["sample_index"]).values("scenario")
        scenarios = Scenario.objects.filter(
            pk__in=both,
            responses__model_version=data["source_b"], responses__sample_index=data["sample_index"],
        ).distinct().order_by("id")
        if data.get("scenario_split"):
            scenarios = scenarios.filter(split=data["scenario_split"])
        return list(scenarios)

    def sample_size(self) -> int | None:
        return None if self.cleaned_data["scenarios"] else self.cleaned_data.get("scenario_limit")


class JudgeImportForm(forms.Form):
    judge_name = forms.CharField(max_length=200, help_text="Decisions already stored under this name are replaced.")
    file = forms.FileField(help_text="The pipeline's judge_decisions.jsonl, or a CSV with scenario_id, criterion, choice (source_a/source_b/tie).")
    source_a_name = forms.CharField(required=False, help_text="The name the file uses for source A, if not its ModelVersion name.")
    source_b_name = forms.CharField(required=False, help_text="The name the file uses for source B.")
    skip_unmatched = forms.BooleanField(required=False, help_text="Skip lines for scenarios that are not in this study.")

    MAX_BYTES = 50 * 1024 * 1024

    def clean_file(self):
        upload = self.cleaned_data["file"]
        name = upload.name.lower()
        if not (name.endswith(".jsonl") or name.endswith(".ndjson") or name.endswith(".csv")):
            raise forms.ValidationError("Upload a .jsonl or .csv file.")
        if upload.size > self.MAX_BYTES:
            raise forms.ValidationError("The file is larger than 50 MB.")
        return upload

    def source_names(self) -> dict:
        names = {}
        if self.cleaned_data.get("source_a_name"):
            names[self.cleaned_data["source_a_name"].strip()] = "source_a"
        if self.cleaned_data.get("source_b_name"):
            names[self.cleaned_data["source_b_name"].strip()] = "source_b"
        return names
