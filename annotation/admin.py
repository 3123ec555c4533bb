"""Researchers run rating studies from the admin: create (through the same
service the training pipeline calls), open, close, watch progress, see results,
import judge decisions and export. Judgments are read-only here."""
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Prefetch, Q
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
from .models import Assignment, Choice, JudgeDecision, Judgment, JudgmentChoice, JudgmentRevision, RatingItem, RatingStudy


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


class ResearchersOnlyMixin:
    """These pages name the sources a study compares (and the judgments say which
    source each clinician preferred): researchers only, that is staff in the
    Researchers group or superusers, whatever permissions a staff account was
    given one by one. Clinicians have no admin access to begin with."""

    def has_module_permission(self, request):
        return roles.is_researcher(request.user) and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return roles.is_researcher(request.user) and super().has_view_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return roles.is_researcher(request.user) and super().has_change_permission(request, obj)

    def has_add_permission(self, request):
        return roles.is_researcher(request.user) and super().has_add_permission(request)

    def has_delete_permission(self, request, obj=None):
        return roles.is_researcher(request.user) and super().has_delete_permission(request, obj)


@admin.register(RatingStudy)
class RatingStudyAdmin(ResearchersOnlyMixin, HideRatedStudiesMixin, admin.ModelAdmin):
    study_lookup = "pk"
    list_display = ["name", "state", "source_a", "source_b", "overlap_label", "item_count", "progress", "created_at", "results_link"]
    list_filter = ["state"]
    search_fields = ["name"]
    readonly_fields = [
        "name", "public_title", "description", "state", "source_a", "source_b", "criteria_set", "overlap", "overlap_all",
        "sample_index", "seed_status", "normalisation", "screened_at", "token", "created_by_name", "created_at", "opened_at",
        "closed_at", "dimension_list", "clinician_progress",
    ]
    # The seed is never rendered, not even as a form input: it decides every position. Who created the
    # study is shown as text (created_by_name), so the field itself is left out of the form too.
    exclude = ["seed", "created_by"]
    actions = ["open_studies", "close_studies"]
    change_form_template = "admin/annotation/ratingstudy/change_form.html"

    class Media:
        css = {"all": ["annotation/admin.css"]}  # the list's headers and dates wrap, so every column shows

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("source_a", "source_b").annotate(
            n_items=Count("items", distinct=True),
        )

    def has_delete_permission(self, request, obj=None):
        return False  # judgments are research data; close a study instead

    @admin.display(description="created by")
    def created_by_name(self, obj):
        # Plain text: a link to the user's page would be a 403 for researchers (no auth permissions).
        return obj.created_by.get_username() if obj.created_by else "—"

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

    @staticmethod
    def _download(study, content, content_type: str, name: str) -> HttpResponse:
        response = HttpResponse(content, content_type=f"{content_type}; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{slugify(study.name) or "study"}-{name}"'
        return response

    def export_judgments_view(self, request, pk):
        study = self._study(request, pk)
        return self._download(study, services.judgments_export(study=study, actor=request.user), "text/csv", "judgments.csv")

    def export_pairs_view(self, request, pk):
        study = self._study(request, pk)
        return self._download(study, services.preference_pairs_export(study=study, actor=request.user), "application/jsonl",
                              "pairs.jsonl")

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


def _source_choice(choice: str) -> str:
    """A stored choice in source terms, short enough for a list column."""
    return {"a": "A", "b": "B", "tie": "tie"}.get(choice, choice)


def _unsafe_label(unsafe_a: bool, unsafe_b: bool) -> str:
    flagged = [name for name, flag in (("A", unsafe_a), ("B", unsafe_b)) if flag]
    return ", ".join(flagged) or "—"


def _choice_label(choice: str) -> str:
    try:
        return Choice(choice).label
    except ValueError:
        return choice


def _unsafe_sentence(unsafe_a: bool, unsafe_b: bool) -> str:
    flagged = [name for name, flag in (("source A's", unsafe_a), ("source B's", unsafe_b)) if flag]
    if not flagged:
        return "Neither response"
    return (" and ".join(flagged) + (" responses" if len(flagged) == 2 else " response")).capitalize()


def _duration(ms: int) -> str:
    seconds = round((ms or 0) / 1000)
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def _item_phrase(item: RatingItem) -> str:
    """The item's title (its study, its place there and its scenario; never the token nor a source)
    for the middle of a sentence."""
    title = str(item)
    return title[:1].lower() + title[1:]


def _order_shown(left_is_a: bool) -> str:
    return "Source A on the left" if left_is_a else "Source B on the left"


class StudyRecordAdmin(ResearchersOnlyMixin, HideRatedStudiesMixin, ReadOnlyAdmin):
    """Read-only records of a study (judgments, their revisions, judge decisions):
    researchers only, titled for people (see object_title) rather than by repr."""

    change_form_template = "admin/annotation/record_change_form.html"

    def object_title(self, obj) -> str:
        return str(obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)  # None for an unknown, malformed or hidden id
        if obj is not None:
            extra_context = {"subtitle": self.object_title(obj), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="item", ordering="item__order")
    def item_label(self, obj):
        return str(obj.item)

    @admin.display(description="item (study)", ordering="item")
    def item_in_study(self, obj):
        # The study's name under the item rather than in a column of its own: the list stays narrow
        # enough to show every column beside the navigation and the filters.
        return format_html('{}<br><span class="record-study">{}</span>', obj.item, obj.study.name)

    class Media:
        css = {"all": ["annotation/admin.css"]}


@admin.register(Judgment)
class JudgmentAdmin(StudyRecordAdmin):
    # The first column (the item, its study beneath) opens the judgment; the filter picks a study once there are two.
    list_display = ["item_in_study", "clinician_name", "answers", "unsafe", "revision", "time_on_task", "updated_at"]
    list_filter = [("study", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["clinician__username", "study__name"]
    fields = readonly_fields = ["study", "item_label", "clinician_name", "answers_in_full", "unsafe_in_full", "comment",
                                "order_shown", "time_on_task", "revision", "submitted_at", "updated_at"]

    def get_queryset(self, request):
        choices = JudgmentChoice.objects.select_related("criterion").order_by("criterion__position", "criterion__key")
        return super().get_queryset(request).select_related("study", "item", "clinician").prefetch_related(
            Prefetch("choices", queryset=choices))

    def object_title(self, obj):
        return f"Judgment by {obj.clinician.get_username()} on {_item_phrase(obj.item)}"

    @admin.display(description="clinician", ordering="clinician__username")
    def clinician_name(self, obj):
        # Plain text: a link to the user's page would be a 403 for researchers.
        return obj.clinician.get_username()

    @admin.display(description="answers (A, B: source)")
    def answers(self, obj):
        return " · ".join(f"{c.criterion.key} {_source_choice(c.choice)}" for c in obj.choices.all()) or "—"

    @admin.display(description="answers")
    def answers_in_full(self, obj):
        return "; ".join(f"{c.criterion.name}: {c.get_choice_display()}" for c in obj.choices.all()) or "—"

    @admin.display(description="unsafe")
    def unsafe(self, obj):
        return _unsafe_label(obj.unsafe_a, obj.unsafe_b)

    @admin.display(description="flagged unsafe")
    def unsafe_in_full(self, obj):
        return _unsafe_sentence(obj.unsafe_a, obj.unsafe_b)

    @admin.display(description="order shown")
    def order_shown(self, obj):
        return _order_shown(obj.left_is_a)

    @admin.display(description="time on task", ordering="time_on_task_ms")
    def time_on_task(self, obj):
        return _duration(obj.time_on_task_ms)


@admin.register(JudgmentRevision)
class JudgmentRevisionAdmin(StudyRecordAdmin):
    study_lookup = "assignment__study"
    list_display = ["assignment_label", "number", "event", "answers", "created_at"]
    list_select_related = ["assignment__clinician"]
    list_filter = ["event", ("assignment__study", admin.RelatedOnlyFieldListFilter)]
    fields = readonly_fields = ["assignment_label", "number", "event", "answers_in_full", "unsafe_in_full", "comment",
                                "order_shown", "time_on_task", "created_at"]

    def object_title(self, obj):
        return f"Revision {obj.number} ({obj.get_event_display().lower()}) of {obj.assignment}"

    @admin.display(description="judgment of", ordering="assignment")
    def assignment_label(self, obj):
        return str(obj.assignment)

    @admin.display(description="answers (A, B: source)")
    def answers(self, obj):
        choices = (obj.answers or {}).get("choices") or {}
        return " · ".join(f"{key} {_source_choice(choice)}" for key, choice in choices.items()) or "—"

    @admin.display(description="answers")
    def answers_in_full(self, obj):
        choices = (obj.answers or {}).get("choices") or {}
        return "; ".join(f"{key}: {_choice_label(choice)}" for key, choice in choices.items()) or "—"

    @admin.display(description="flagged unsafe")
    def unsafe_in_full(self, obj):
        answers = obj.answers or {}
        return _unsafe_sentence(answers.get("unsafe_a"), answers.get("unsafe_b"))

    @admin.display(description="comment")
    def comment(self, obj):
        return (obj.answers or {}).get("comment") or "—"

    @admin.display(description="order shown")
    def order_shown(self, obj):
        return _order_shown(obj.left_is_a)

    @admin.display(description="time on task")
    def time_on_task(self, obj):
        return _duration(obj.time_on_task_ms)


@admin.register(JudgeDecision)
class JudgeDecisionAdmin(StudyRecordAdmin):
    list_display = ["item_in_study", "judge_name", "criterion_name", "choice", "synthetic", "imported_at"]
    list_select_related = ["study", "item", "criterion"]
    list_filter = [("study", admin.RelatedOnlyFieldListFilter), "judge_name", ("criterion", admin.RelatedOnlyFieldListFilter)]
    fields = readonly_fields = ["study", "judge_name", "item_label", "criterion_name", "choice", "synthetic", "imported_at"]

    def object_title(self, obj):
        return f"{obj.judge_name} on {_item_phrase(obj.item)}: {obj.criterion.name}, {obj.get_choice_display()}"

    @admin.display(description="criterion", ordering="criterion__position")
    def criterion_name(self, obj):
        return obj.criterion.name
