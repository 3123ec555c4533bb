from django.contrib import admin
from django.utils.html import format_html

from . import roles
from .admin_base import ReadOnlyAdmin
from .models import AuditEvent, CriteriaSet, CriteriaSetMember, Criterion, Helpline, ModelVersion, Response, Scenario


@admin.register(Criterion)
class CriterionAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "is_therapeutic", "is_safety", "evaluation_only", "position"]
    search_fields = ["key", "name"]


class CriteriaSetMemberInline(admin.TabularInline):
    model = CriteriaSetMember
    extra = 0


@admin.register(CriteriaSet)
class CriteriaSetAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "safety_criterion"]
    inlines = [CriteriaSetMemberInline]


@admin.register(Scenario)
class ScenarioAdmin(admin.ModelAdmin):
    list_display = ["id", "source", "external_id", "split", "risk_level", "short_text"]
    list_filter = ["split", "risk_level", "source"]
    # Also what the rating-study form's scenario search looks in: words of the text, a topic, a risk level.
    search_fields = ["text", "external_id", "topics", "risk_level"]
    readonly_fields = ["text_sha256", "created_at"]

    @admin.display(description="text")
    def short_text(self, obj):
        return obj.text[:80]


class HiddenFromRatersMixin:
    """Model versions and their responses would tell a rater which model wrote
    what they rate: anyone who rates in any study sees neither, whatever other
    permissions they hold."""

    def has_module_permission(self, request):
        return not roles.rates_in_any_study(request.user) and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return not roles.rates_in_any_study(request.user) and super().has_view_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return not roles.rates_in_any_study(request.user) and super().has_change_permission(request, obj)

    def has_add_permission(self, request):
        return not roles.rates_in_any_study(request.user) and super().has_add_permission(request)

    def has_delete_permission(self, request, obj=None):
        return not roles.rates_in_any_study(request.user) and super().has_delete_permission(request, obj)


@admin.register(ModelVersion)
class ModelVersionAdmin(HiddenFromRatersMixin, admin.ModelAdmin):
    list_display = ["name", "kind", "model_ref", "parent", "created_at", "withdrawal"]
    list_filter = ["kind"]
    search_fields = ["name", "model_ref"]
    readonly_fields = ["withdrawal"]

    @admin.display(description="withdrawal")
    def withdrawal(self, obj):
        """Set by training when a participant in a survey dataset version behind this model withdrew."""
        mark = (obj.provenance or {}).get("affected_by_withdrawal")
        if not mark:
            return "—"
        versions = ", ".join(f"#{pk}" for pk in mark.get("dataset_versions", []))
        return format_html('<strong class="errornote">Trained on withdrawn data (survey dataset version {}, {}): '
                           "do not use or publish.</strong>", versions, mark.get("at", ""))


@admin.register(Response)
class ResponseAdmin(HiddenFromRatersMixin, admin.ModelAdmin):
    list_display = ["id", "scenario", "model_version", "sample_index", "seed"]
    list_filter = ["model_version"]
    raw_id_fields = ["scenario"]


@admin.register(Helpline)
class HelplineAdmin(admin.ModelAdmin):
    list_display = ["region", "name", "phone", "text_contact", "active", "order"]
    list_filter = ["region", "active"]
    list_editable = ["active", "order"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor_label", "action", "target_type", "target_id"]
    list_filter = ["action"]
    search_fields = ["actor_label", "action", "target_id"]
    date_hierarchy = "created_at"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]
