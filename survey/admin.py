"""Survey admin. Changes go through survey.services, so each one is audited;
participant answers are not editable here (they are the participant's)."""
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from core.admin_base import ReadOnlyAdmin
from core.error_handlers import admin_error
from core.roles import is_researcher

from . import questions, selectors, services
from .exceptions import SurveyError
from .models import (
    ConsentVersion,
    CrisisFlag,
    DatasetVersion,
    EligibilityQuestion,
    Participant,
    Persona,
    PersonaSelection,
    Study,
    WeightVector,
)


class EligibilityQuestionInline(admin.TabularInline):
    model = EligibilityQuestion
    extra = 0


def _run(modeladmin, request, what, action):
    try:
        result = action()
    except SurveyError as exc:
        admin_error(modeladmin, request, exc, prefix=f"{what}: ")
        return None
    return result


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ["slug", "title", "is_active", "model_version", "scenarios_per_participant", "responses_per_scenario", "dashboard"]
    list_filter = ["is_active"]
    inlines = [EligibilityQuestionInline]
    actions = ["export_answers", "export_criteria_rankings", "export_response_rankings", "build_personas", "select_personas"]

    @admin.display(description="dashboard")
    def dashboard(self, obj):
        return format_html('<a href="{}">open</a>', reverse("survey:dashboard", args=[obj.slug]))

    def save_model(self, request, obj, form, change):
        services.study_save(study=obj, actor=request.user, changed=form.changed_data)

    def _each(self, request, queryset, what, action):
        for study in queryset:
            result = _run(self, request, what, lambda: action(study))
            if result is not None:
                self.message_user(request, f"{study.slug}: {what} done ({result}).")

    @admin.action(description="Export survey answers (CSV, no free text)")
    def export_answers(self, request, queryset):
        self._each(request, queryset, "answers export", lambda s: services.survey_answers_export(study=s, actor=request.user))

    @admin.action(description="Export criteria rankings (CSV)")
    def export_criteria_rankings(self, request, queryset):
        self._each(request, queryset, "criteria rankings export", lambda s: services.criteria_rankings_export(study=s, actor=request.user))

    @admin.action(description="Export human response rankings (JSONL)")
    def export_response_rankings(self, request, queryset):
        self._each(request, queryset, "response rankings export", lambda s: services.response_rankings_export(study=s, actor=request.user))

    @admin.action(description="Build or refresh personas")
    def build_personas(self, request, queryset):
        self._each(request, queryset, "persona build", lambda s: f"{services.personas_build(study=s, actor=request.user)} personas")

    @admin.action(description="Select personas (study sizes, seed 0)")
    def select_personas(self, request, queryset):
        self._each(request, queryset, "persona selection", lambda s: services.personas_select(study=s, actor=request.user).details)


@admin.register(ConsentVersion)
class ConsentVersionAdmin(admin.ModelAdmin):
    """Saving a changed text publishes a new version; earlier consent records keep theirs."""

    list_display = ["study", "version", "created_at", "created_by"]
    list_filter = ["study"]
    fields = ["study", "version", "information_sheet", "statements", "created_by", "created_at"]
    readonly_fields = ["version", "created_by", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "study"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change and not form.changed_data:
            return
        published = services.consent_version_publish(
            study=obj.study, information_sheet=obj.information_sheet, statements=obj.statements, actor=request.user
        )
        # The admin goes on with the new row; the old one was never written.
        obj.pk, obj.version, obj.created_at, obj.created_by = published.pk, published.version, published.created_at, published.created_by
        obj._state.adding = False
        if change:
            self.message_user(request, f"Published as version {published.version}; earlier answers keep their version.")

    def has_delete_permission(self, request, obj=None):
        return obj is None or not obj.records.exists()


@admin.register(Participant)
class ParticipantAdmin(ReadOnlyAdmin):
    list_display = ["pseudonym", "study", "status", "source", "synthetic", "attention_flagged", "created_at", "completed_at"]
    list_filter = ["study", "status", "source", "synthetic", "attention_flagged"]
    search_fields = ["pseudonym"]
    # The token opens the participant's own pages: researchers never need it.
    exclude = ["token", "start_nonce", "scenario_plan", "seed"]
    actions = ["withdraw"]

    @admin.action(description="Withdraw (delete everything of theirs, mark dataset versions and what was built from them)")
    def withdraw(self, request, queryset):
        # The message names no one: nothing of a withdrawn participant's may be kept, a session included.
        people, marked = 0, set()
        for participant in queryset:
            marked.update(services.participant_withdraw(participant=participant, via="admin", actor=request.user))
            people += 1
        self.message_user(request, f"{people} participant(s) withdrawn; {len(marked)} dataset version(s) marked.")


@admin.register(Persona)
class PersonaAdmin(admin.ModelAdmin):
    list_display = ["persona_id", "study", "quality", "completeness", "consistency", "selected", "split", "edited"]
    list_filter = ["participant__study", "selected", "split", "edited"]
    fields = ["persona_id", "text", "split", "weights", "completeness", "consistency", "quality", "edited"]
    readonly_fields = ["persona_id", "weights", "completeness", "consistency", "quality", "edited"]
    search_fields = ["text", "participant__pseudonym"]

    @admin.display(description="study")
    def study(self, obj):
        return obj.participant.study.slug

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        original = Persona.objects.get(pk=obj.pk)
        new_text, new_split = obj.text, obj.split
        services.persona_update(persona=original, text=new_text, split=new_split, actor=request.user)


@admin.register(PersonaSelection)
class PersonaSelectionAdmin(ReadOnlyAdmin):
    list_display = ["study", "created_at", "seed", "total", "train", "test", "min_quality", "candidates", "details", "created_by"]


@admin.register(DatasetVersion)
class DatasetVersionAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "study", "created_at", "created_by", "participant_count", "affected_by_withdrawal_at",
                    "files_deleted_at", "note"]
    list_filter = ["kind", "study", ("affected_by_withdrawal_at", admin.EmptyFieldListFilter)]
    exclude = ["participants"]


@admin.register(WeightVector)
class WeightVectorAdmin(ReadOnlyAdmin):
    list_display = ["name", "version", "study", "method", "cohort", "participant_count", "weights", "created_at"]
    list_filter = ["study", "name", "method"]


@admin.register(CrisisFlag)
class CrisisFlagAdmin(ReadOnlyAdmin):
    """Free text that matched crisis language: what, where, when and whether it was
    reviewed. Researchers only (the words are a participant's)."""

    list_display = ["participant_pseudonym", "study", "flagged_field", "text_excerpt", "created_at", "review_state"]
    list_filter = [("reviewed_at", admin.EmptyFieldListFilter), "participant__study"]
    list_select_related = ["participant__study", "reviewed_by"]
    fields = ["participant_pseudonym", "study", "flagged_field", "text", "created_at", "review_state"]
    readonly_fields = fields
    actions = ["mark_reviewed"]

    def has_module_permission(self, request):
        return is_researcher(request.user)

    def has_view_permission(self, request, obj=None):
        return is_researcher(request.user)

    @admin.display(description="participant", ordering="participant__pseudonym")
    def participant_pseudonym(self, obj):
        return obj.participant.pseudonym

    @admin.display(description="study", ordering="participant__study__slug")
    def study(self, obj):
        return obj.participant.study.slug

    @admin.display(description="flagged field")
    def flagged_field(self, obj):
        return questions.item_label(obj.item_key)

    @admin.display(description="text")
    def text(self, obj):
        return selectors.crisis_flag_text(obj)

    @admin.display(description="text")
    def text_excerpt(self, obj):
        text = selectors.crisis_flag_text(obj)
        return text if len(text) <= 120 else text[:119] + "…"

    @admin.display(description="review", ordering="reviewed_at")
    def review_state(self, obj):
        if obj.reviewed_at is None:
            return "Not reviewed"
        by = f" by {obj.reviewed_by}" if obj.reviewed_by else ""
        return f"Reviewed {obj.reviewed_at:%Y-%m-%d %H:%M}{by}"

    @admin.action(description="Mark reviewed")
    def mark_reviewed(self, request, queryset):
        for flag in queryset:
            services.crisis_flag_review(flag=flag, actor=request.user)
        self.message_user(request, f"{queryset.count()} flag(s) marked reviewed.")
