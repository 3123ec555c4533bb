"""Researcher pages (staff in the Researchers group): study dashboard with
statistics and plots, exports, weight vectors, persona selection, crisis
flags. Every change goes through survey.services (audited)."""
from __future__ import annotations

from functools import wraps
from pathlib import Path

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from core.roles import is_researcher
from core.audit import AuditAction, audit_record

from . import charts, selectors, services
from .exceptions import SurveyError
from .forms import PersonaSelectionForm
from .models import CrisisFlag, DatasetVersion, Persona, PersonaSelection, Study, WeightVector


def researcher_required(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_researcher(request.user):
            return render(request, "core/no_role.html", status=403)
        return view(request, *args, **kwargs)

    return wrapper


@researcher_required
def study_list(request):
    studies = [(study, selectors.study_funnel(study)) for study in Study.objects.all()]
    return render(request, "survey/manage/study_list.html", {"studies": studies})


@researcher_required
def dashboard(request, slug):
    study = get_object_or_404(Study, slug=slug)
    personas = Persona.objects.filter(participant__study=study)
    return render(request, "survey/manage/dashboard.html", {
        "study": study,
        "funnel": selectors.study_funnel(study),
        "synthetic_count": study.participants.filter(synthetic=True).count(),
        "report": selectors.study_report(study),
        "flags": selectors.crisis_flags_open(study),
        "weight_vectors": WeightVector.objects.filter(study=study).select_related("dataset_version"),
        "datasets": DatasetVersion.objects.filter(study=study)[:30],
        "persona_counts": {
            "built": personas.count(),
            "selected": personas.filter(selected=True).count(),
            "train": personas.filter(split="train").count(),
            "test": personas.filter(split="test").count(),
        },
        "last_selection": PersonaSelection.objects.filter(study=study).first(),
        "cohort_fields": ["source", *selectors.COHORT_FIELDS],
        "methods": WeightVector.Method.choices,
    })


@researcher_required
def plot(request, slug, name):
    study = get_object_or_404(Study, slug=slug)
    if name not in charts.PLOTS:
        raise Http404("No such plot.")
    response = HttpResponse(charts.PLOTS[name](selectors.study_report(study)), content_type="image/svg+xml")
    response["Cache-Control"] = "private, max-age=60"
    return response


EXPORTS = {
    "answers": lambda study, user, synthetic: services.survey_answers_export(study=study, actor=user, include_synthetic=synthetic),
    "answers-with-text": lambda study, user, synthetic: services.survey_answers_export(
        study=study, actor=user, include_free_text=True, include_synthetic=synthetic),
    "criteria-rankings": lambda study, user, synthetic: services.criteria_rankings_export(
        study=study, actor=user, include_synthetic=synthetic),
    "response-rankings": lambda study, user, synthetic: services.response_rankings_export(
        study=study, actor=user, include_synthetic=synthetic),
    "personas": lambda study, user, synthetic: services.personas_export_jsonl(
        path=services.export_path(study, "personas", ".jsonl"), study=study, actor=user, include_synthetic=synthetic),
}


@require_POST
@researcher_required
def export(request, slug):
    study = get_object_or_404(Study, slug=slug)
    kind = request.POST.get("kind", "")
    if kind not in EXPORTS:
        messages.error(request, f"Unknown export {kind!r}.", extra_tags="datasets")
        return redirect("survey:dashboard", slug=slug)
    return _dashboard_action(
        request, slug, "datasets", lambda: EXPORTS[kind](study, request.user, request.POST.get("include_synthetic") == "yes"),
        lambda version: f"Created {version.label} with {version.participant_count} participants.")


def _dashboard_action(request, slug, section, action, success):
    """Run a dashboard form's service: its SurveyError, or the ``success`` message of what it made, is shown
    in the dashboard's ``section``, where the researcher is sent back to."""
    try:
        made = action()
    except SurveyError as exc:
        messages.error(request, str(exc), extra_tags=section)
    else:
        messages.success(request, success(made), extra_tags=section)
    return redirect(reverse("survey:dashboard", kwargs={"slug": slug}) + f"#{section}")


@researcher_required
def dataset_download(request, pk, index):
    version = get_object_or_404(DatasetVersion, pk=pk)
    problem = selectors.dataset_version_withdrawal_problem(version)
    if problem:
        return render(request, "survey/error.html", {"message": problem}, status=409)
    if not 0 <= index < len(version.files):
        raise Http404("No such file.")
    path = Path(version.files[index]["path"])
    if not path.is_file():
        raise Http404("The file is no longer on disk.")
    with transaction.atomic():
        audit_record(actor=request.user, action=AuditAction.SURVEY_DATASET_DOWNLOAD, target=version, details={"file": path.name})
    return FileResponse(open(path, "rb"), as_attachment=True, filename=path.name)


@require_POST
@researcher_required
def weight_vector_create(request, slug):
    study = get_object_or_404(Study, slug=slug)
    cohort = {}
    field, value = request.POST.get("cohort_field", ""), request.POST.get("cohort_value", "").strip()
    if field and value:
        cohort[field] = value
    return _dashboard_action(
        request, slug, "weights",
        lambda: services.weight_vector_create(
            study=study, name=request.POST.get("name", "").strip(), cohort=cohort,
            method=request.POST.get("method", WeightVector.Method.PLACKETT_LUCE),
            exclude_flagged=request.POST.get("exclude_flagged") == "on", actor=request.user,
        ),
        lambda vector: f"Weight vector {vector} computed from {vector.participant_count} participants.")


@require_POST
@researcher_required
def personas(request, slug):
    study = get_object_or_404(Study, slug=slug)
    try:
        if request.POST.get("action") == "build":
            count = services.personas_build(study=study, actor=request.user)
            messages.success(request, f"Built or refreshed {count} personas.", extra_tags="personas")
        elif request.POST.get("action") == "select":
            form = PersonaSelectionForm(request.POST, study=study)
            if not form.is_valid():
                for message in form.error_messages():
                    messages.error(request, f"Nothing was selected. {message}", extra_tags="personas")
            else:
                data = form.cleaned_data
                selection = services.personas_select(
                    study=study, total=data["total"], train=data["train"], test=data["test"], seed=data["seed"],
                    min_quality=data["min_quality"], actor=request.user,
                )
                messages.success(request, f"Selected {selection.details['selected']} personas "
                                          f"({selection.details['train']} train / {selection.details['test']} test).")
        else:
            messages.error(request, "Unknown persona action.", extra_tags="personas")
    except SurveyError as exc:
        messages.error(request, str(exc), extra_tags="personas")
    return redirect(reverse("survey:dashboard", kwargs={"slug": slug}) + "#personas")


@require_POST
@researcher_required
def crisis_flag_review(request, pk):
    flag = get_object_or_404(CrisisFlag.objects.select_related("participant__study"), pk=pk)
    services.crisis_flag_review(flag=flag, actor=request.user)
    messages.success(request, f"Marked the flag on {flag.item_key} as reviewed.", extra_tags="flags")
    return redirect(reverse("survey:dashboard", kwargs={"slug": flag.participant.study.slug}) + "#flags")
