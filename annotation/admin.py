"""Researchers run rating studies from the admin: create (through the same
service the training pipeline calls), open, close, watch progress, see results,
import judge decisions and export. Judgments are read-only here."""
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import slugify

from core import roles
from core.admin_base import ReadOnlyAdmin
from core.error_handlers import admin_error
from core.input import accepts_repeated

from . import selectors, services
from .exceptions import AnnotationError
from .forms import JudgeImportForm, RatingStudyCreateForm
from .models import Assignment, JudgeDecision, Judgment, JudgmentRevision, RatingItem, RatingStudy


class HideRatedStudiesMixin:
    """Someone who rates in a study never sees its pages here, whatever other
    permissions they hold: lists leave the study out, its pages answer 403."""

    study_lookup = "study"

    def get_queryset(self, request):
        rated = selectors.rated_study_ids(request.user)
        queryset = super().get_queryset(request)
        return queryset.exclude(**{f"{self.study_lookup}__in": rated}) if rated else queryset

    def _refuse_rated(self, request, object_id):
        try:
            object_id = int(object_id)
        except (TypeError, ValueError):
            return  # not an id: the admin answers as for any unknown object
        rated = selectors.rated_study_ids(request.user)
        if rated and self.model._default_manager.filter(pk=object_id, **{f"{self.study_lookup}__in": rated}).exists():
            raise PermissionDenied("You rate in this study, so its researcher pages are closed to you.")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        self._refuse_rated(request, object_id)
        return super().change_view(request, object_id, form_url, extra_context)

    def history_view(self, request, object_id, extra_context=None):
        self._refuse_rated(request, object_id)
        return super().history_view(request, object_id, extra_context)

    def delete_view(self, request, object_id, extra_context=None):
        self._refuse_rated(request, object_id)
        return super().delete_view(request, object_id, extra_context)


@admin.register(RatingStudy)
class RatingStudyAdmin(HideRatedStudiesMixin, admin.ModelAdmin):
    study_lookup = "pk"
    list_display = ["name", "state", "source_a", "source_b", "overlap_label", "item_count", "progress", "created_at", "results_link"]
    list_filter = ["state"]
    search_fields = ["name"]
    readonly_fields = [
        "name", "public_title", "description", "state", "source_a", "source_b", "criteria_set", "overlap", "overlap_all",
        "sample_index", "seed_status", "normalisation", "screened_at", "token", "created_by", "created_at", "opened_at", "closed_at", "dimension_list", "clinician_progress",
    ]
    exclude = ["seed"]  # never rendered, not even as a form input: it decides every position
    actions = ["open_studies", "close_studies"]
    change_form_template = "admin/annotation/ratingstudy/change_form.html"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("source_a", "source_b").annotate(
            n_items=Count("items", distinct=True),
        )

    def has_delete_permission(self, request, obj=None):
        return False  # judgments are research data; close a study instead

    @admin.display(description="overlap")
    def overlap_label(self, obj):
        return f"all ({obj.overlap})" if obj.overlap_all else str(obj.overlap)

    @admin.display(description="items")
    def item_count(self, obj):
        return obj.n_items

    @admin.display(description="judgments")
    def progress(self, obj):
        counts = Assignment.objects.filter(study=obj).aggregate(
            total=Count("id"), done=Count("id", filter=Q(status=Assignment.Status.DONE))
        )
        return f"{counts['done']} of {counts['total']}"

    @admin.display(description="results")
    def results_link(self, obj):
        return format_html('<a href="{}">results</a>', reverse("admin:annotation_ratingstudy_results", args=[obj.pk]))

    @admin.display(description="random seed")
    def seed_status(self, obj):
        # Anyone who knows the seed can recompute every left/right position; it stays hidden until close.
        if obj.state == RatingStudy.State.CLOSED:
            return f"{obj.seed} (revealed because the study is closed)"
        return "Secret while the study is a draft or open; shown on the results page once the study is closed."

    @admin.display(description="dimensions")
    def dimension_list(self, obj):
        return ", ".join(c.key for c in selectors.study_dimensions(obj))

    @admin.display(description="clinicians (done / assigned)")
    def clinician_progress(self, obj):
        rows = (
            Assignment.objects.filter(study=obj).values("clinician__username")
            .annotate(total=Count("id"), done=Count("id", filter=Q(status=Assignment.Status.DONE)))
            .order_by("clinician__username")
        )
        return "; ".join(f"{r['clinician__username']}: {r['done']}/{r['total']}" for r in rows)

    # --- creation through the service ---

    @accepts_repeated("scenarios", "clinicians")
    def add_view(self, request, form_url="", extra_context=None):
        self._require_researcher(request)
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = RatingStudyCreateForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                study = services.rating_study_create(
                    name=data["name"], public_title=data["public_title"], description=data["description"],
                    source_a=data["source_a"], source_b=data["source_b"], scenarios=form.selected_scenarios(),
                    sample_size=form.sample_size(), keep_source_order=data["keep_source_order"],
                    criteria_set=data["criteria_set"], clinicians=list(data["clinicians"]), overlap=data["overlap"],
                    include_overall=data["include_overall"], sample_index=data["sample_index"],
                    open_now=data["open_now"], actor=request.user,
                )
            except AnnotationError as error:
                form.add_error(None, error.message)
            else:
                self.message_user(request, f"Created {study.name} ({study.items.count()} items).", messages.SUCCESS)
                return redirect("admin:annotation_ratingstudy_change", study.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": "Create a rating study",
            "form": form,
            "opts": self.model._meta,
            "scenario_search": self._scenario_search(request, request.GET.get("scenario_q", "")),
            "scenario_count_url": reverse("admin:annotation_ratingstudy_scenario_count"),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/annotation/ratingstudy/create.html", context, status=400 if form.errors else 200)

    SCENARIO_RESULTS_SHOWN = 50

    def _scenario_matches(self, request, query: str):
        """The scenarios a search finds: the scenario admin's own search (what the autocomplete uses too)."""
        from core.models import Scenario

        scenarios, duplicates = self.admin_site._registry[Scenario].get_search_results(
            request, Scenario.objects.order_by("id"), query)
        return scenarios.distinct() if duplicates else scenarios

    def _scenario_search(self, request, query: str) -> dict | None:
        """The page's own search (a plain GET form, so it works without JavaScript): count and first matches."""
        query = query.strip()
        if not query:
            return None
        matches = self._scenario_matches(request, query)
        return {"query": query, "count": matches.count(), "results": list(matches[: self.SCENARIO_RESULTS_SHOWN]),
                "shown": self.SCENARIO_RESULTS_SHOWN}

    def scenario_count_view(self, request):
        """How many scenarios a query matches, for the count beside the autocomplete."""
        self._require_researcher(request)
        query = request.GET.get("q", "").strip()
        return JsonResponse({"query": query, "count": self._scenario_matches(request, query).count()})

    def save_model(self, request, obj, form, change):
        """Every field is read-only after creation; changes go through services."""

    # --- state changes ---

    @admin.action(description="Open the selected studies to their clinicians")
    def open_studies(self, request, queryset):
        self._transition(request, queryset, services.rating_study_open, "opened")

    @admin.action(description="Close the selected studies")
    def close_studies(self, request, queryset):
        self._transition(request, queryset, services.rating_study_close, "closed")

    def _transition(self, request, queryset, service, verb):
        done = 0
        for study in queryset:
            try:
                service(study=study, actor=request.user)
                done += 1
            except AnnotationError as error:
                admin_error(self, request, error, prefix=f"{study.name}: ")
        if done:
            self.message_user(request, f"{done} {'study' if done == 1 else 'studies'} {verb}.", messages.SUCCESS)

    # --- researcher pages ---

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("scenario-count/", wrap(self.scenario_count_view), name="annotation_ratingstudy_scenario_count"),
            path("<int:pk>/results/", wrap(self.results_view), name="annotation_ratingstudy_results"),
            path("<int:pk>/results/chart.svg", wrap(self.chart_view), name="annotation_ratingstudy_chart"),
            path("<int:pk>/export/judgments.csv", wrap(self.export_judgments_view), name="annotation_ratingstudy_export_judgments"),
            path("<int:pk>/export/pairs.jsonl", wrap(self.export_pairs_view), name="annotation_ratingstudy_export_pairs"),
            path("<int:pk>/judge-import/", wrap(self.judge_import_view), name="annotation_ratingstudy_judge_import"),
            path("<int:pk>/state/<str:to>/", wrap(self.state_view), name="annotation_ratingstudy_state"),
            path("<int:pk>/screen/<int:item_pk>/<str:decision>/", wrap(self.screen_review_view),
                 name="annotation_ratingstudy_screen_review"),
        ] + super().get_urls()

    def _require_researcher(self, request):
        if not roles.is_researcher(request.user):
            raise PermissionDenied("Researchers only.")

    def _study(self, request, pk, *, change=False):
        self._require_researcher(request)
        self._refuse_rated(request, pk)
        study = get_object_or_404(RatingStudy.objects.select_related("source_a", "source_b", "criteria_set"), pk=pk)
        allowed = self.has_change_permission(request, study) if change else self.has_view_permission(request, study)
        if not allowed:
            raise PermissionDenied
        return study

    def results_view(self, request, pk):
        study = self._study(request, pk)
        results = selectors.rating_study_results(study, chart=True)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Results: {study.name}",
            "study": study,
            "results": results,
            "opts": self.model._meta,
            "original": study,
        }
        return TemplateResponse(request, "admin/annotation/ratingstudy/results.html", context)

    def chart_view(self, request, pk):
        study = self._study(request, pk)
        results = selectors.rating_study_results(study, chart=True)
        return HttpResponse(results["chart_svg"], content_type="image/svg+xml")

    def export_judgments_view(self, request, pk):
        study = self._study(request, pk)
        content = services.judgments_export(study=study, actor=request.user)
        response = HttpResponse(content, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{slugify(study.name) or "study"}-judgments.csv"'
        return response

    def export_pairs_view(self, request, pk):
        study = self._study(request, pk)
        content = services.preference_pairs_export(study=study, actor=request.user)
        response = HttpResponse(content, content_type="application/jsonl; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{slugify(study.name) or "study"}-pairs.jsonl"'
        return response

    @accepts_repeated()
    def judge_import_view(self, request, pk):
        study = self._study(request, pk, change=True)
        form = JudgeImportForm(request.POST or None, request.FILES or None)
        errors = []
        status = 200
        if request.method == "POST":
            if form.is_valid():
                upload = form.cleaned_data["file"]
                try:
                    text = upload.read().decode("utf-8")
                    fmt = "csv" if upload.name.lower().endswith(".csv") else "jsonl"
                    report = services.judge_decisions_import(
                        study=study, judge_name=form.cleaned_data["judge_name"], rows=services.parse_judge_text(text, fmt=fmt),
                        source_names=form.source_names(), skip_unmatched=form.cleaned_data["skip_unmatched"], actor=request.user,
                    )
                except UnicodeDecodeError:
                    errors = ["The file is not UTF-8 text; nothing was imported."]
                except AnnotationError as error:
                    errors = [error.message] + [e for e in error.errors if e != error.message]
                else:
                    self.message_user(request, report.summary(), messages.SUCCESS)
                    return redirect("admin:annotation_ratingstudy_results", study.pk)
            status = 400
        context = {
            **self.admin_site.each_context(request),
            "title": f"Import judge decisions: {study.name}",
            "study": study,
            "form": form,
            "errors": errors,
            "opts": self.model._meta,
            "original": study,
        }
        return TemplateResponse(request, "admin/annotation/ratingstudy/judge_import.html", context, status=status)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        self._refuse_rated(request, object_id)
        study = self.get_object(request, object_id)  # None for an unknown or malformed id
        if study is not None and roles.is_researcher(request.user):
            extra_context = {**(extra_context or {}), "screen": selectors.study_screen_review(study)}
        return super().change_view(request, object_id, form_url, extra_context)

    def screen_review_view(self, request, pk, item_pk, decision):
        study = self._study(request, pk, change=True)
        if request.method != "POST":
            return HttpResponse("Use POST.", status=405)
        item = get_object_or_404(RatingItem, pk=item_pk, study=study)
        try:
            services.rating_item_screen_review(item=item, decision=decision, actor=request.user)
            verb = "kept as is" if decision == "keep" else "excluded from the study"
            self.message_user(request, f"Item {item.order + 1} ({item.scenario_ref}) {verb}.", messages.SUCCESS)
        except AnnotationError as error:
            admin_error(self, request, error)
        return redirect(reverse("admin:annotation_ratingstudy_change", args=[study.pk]) + "#self-identification-screen")

    @accepts_repeated()
    def state_view(self, request, pk, to):
        study = self._study(request, pk, change=True)
        if request.method != "POST":
            return HttpResponse("Use POST.", status=405)
        service = {"open": services.rating_study_open, "close": services.rating_study_close}.get(to)
        if service is None:
            return HttpResponse("Unknown state.", status=400)
        try:
            service(study=study, actor=request.user)
            self.message_user(request, f"{study.name} is now {to if to == 'open' else 'closed'}.", messages.SUCCESS)
        except AnnotationError as error:
            admin_error(self, request, error)
        return redirect("admin:annotation_ratingstudy_change", study.pk)


@admin.register(Judgment)
class JudgmentAdmin(HideRatedStudiesMixin, ReadOnlyAdmin):
    list_display = ["study", "item", "clinician", "revision", "unsafe_a", "unsafe_b", "time_on_task_ms", "updated_at"]
    list_select_related = ["study", "item", "clinician"]
    list_filter = ["study"]
    search_fields = ["clinician__username", "item__token"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("study", "item", "clinician")


@admin.register(JudgmentRevision)
class JudgmentRevisionAdmin(HideRatedStudiesMixin, ReadOnlyAdmin):
    study_lookup = "assignment__study"
    list_display = ["assignment", "number", "event", "created_at"]
    list_select_related = ["assignment__clinician"]
    list_filter = ["event", "assignment__study"]


@admin.register(JudgeDecision)
class JudgeDecisionAdmin(HideRatedStudiesMixin, ReadOnlyAdmin):
    list_display = ["study", "judge_name", "item", "criterion", "choice", "synthetic", "imported_at"]
    list_filter = ["study", "judge_name", "criterion"]
