"""Researchers start, watch, cancel and retry experiments from the admin."""
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from core.admin_base import ReadOnlyAdmin
from core.errors import ApplicationError
from core.input import accepts_repeated

from . import registry, selectors, services
from .forms import SendForRatingForm, StartExperimentForm
from .models import Artifact, Experiment, Job
from .plans import ConfigError


@admin.register(Experiment)
class ExperimentAdmin(ReadOnlyAdmin):
    # Read-only: experiments are started through the "Start experiment" form, and their
    # artifacts and model versions keep pointing at them.
    list_display = ["name", "preset", "created_by", "created_at", "report_link"]
    list_filter = ["preset"]
    search_fields = ["name"]
    # The configuration is shown as a labelled table (change_form.html), not as a JSON field.
    # Who started it as plain text: a link to the user's page would be a 403 for researchers.
    fields = readonly_fields = ["name", "preset", "started_by", "created_at", "output_dir"]
    # The live job table (change_form.html) shows the jobs; experiments are records, not edited.
    change_form_template = "admin/training/experiment/change_form.html"
    change_list_template = "admin/training/experiment/change_list.html"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        experiment = self.get_object(request, object_id)
        extra = {"settings_rows": selectors.experiment_settings(experiment=experiment)} if experiment else {}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    @admin.display(description="started by")
    def started_by(self, obj):
        return obj.created_by.get_username() if obj.created_by else "—"

    @admin.display(description="report")
    def report_link(self, obj):
        return format_html('<a href="{}">report</a>', reverse("admin:training_experiment_report", args=[obj.pk]))

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("start/", wrap(self.start_view), name="training_experiment_start"),
            path("<int:pk>/status.json", wrap(self.status_view), name="training_experiment_status"),
            path("<int:pk>/report/", wrap(self.report_view), name="training_experiment_report"),
            path("<int:pk>/send-for-rating/", wrap(self.send_for_rating_view), name="training_experiment_send_for_rating"),
            path("job/<int:pk>/cancel/", wrap(require_POST(self.job_cancel_view)), name="training_job_cancel"),
            path("job/<int:pk>/retry/", wrap(require_POST(self.job_retry_view)), name="training_job_retry"),
        ] + super().get_urls()

    def _require(self, request, codename):
        if not request.user.has_perm(f"training.{codename}"):
            raise PermissionDenied

    @accepts_repeated()
    def start_view(self, request):
        self._require(request, "add_experiment")
        preset = request.POST.get("preset") or request.GET.get("preset") or "cpu_demo"
        if preset not in registry.PRESETS:
            preset = "cpu_demo"
        if request.method == "POST":
            form = StartExperimentForm(request.POST)
            if form.is_valid():
                try:
                    experiment = services.experiment_start(
                        name=form.cleaned_data["name"], config=form.cleaned_data["checked_config"], actor=request.user,
                    )
                except ConfigError as exc:
                    for message in exc.messages:
                        form.add_error(None, message)
                else:
                    messages.success(request, f"Experiment {experiment.name!r} started with {experiment.jobs.count()} jobs.")
                    return redirect("admin:training_experiment_change", experiment.pk)
        else:
            form = StartExperimentForm(initial={"preset": preset, "config": StartExperimentForm.defaults_json(preset)})
        context = {
            **self.admin_site.each_context(request),
            "title": "Start experiment",
            "form": form,
            "opts": self.model._meta,
            "presets": [(value, label, reverse("admin:training_experiment_start") + f"?preset={value}") for value, label in registry.preset_choices()],
        }
        return render(request, "admin/training/experiment/start.html", context, status=400 if request.method == "POST" else 200)

    def status_view(self, request, pk):
        self._require(request, "view_experiment")
        experiment = get_object_or_404(Experiment, pk=pk)
        return JsonResponse(selectors.experiment_status(experiment=experiment))

    def report_view(self, request, pk):
        self._require(request, "view_experiment")
        from .reports import experiment_report_context

        experiment = get_object_or_404(Experiment, pk=pk)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "title": f"Report: {experiment.name}",
                   **experiment_report_context(experiment=experiment, request=request)}
        return render(request, "admin/training/experiment/report.html", context)

    @accepts_repeated("clinicians")
    def send_for_rating_view(self, request, pk):
        self._require(request, "change_experiment")
        experiment = get_object_or_404(Experiment, pk=pk)
        form = SendForRatingForm(request.POST or None, experiment=experiment)
        status = 200
        if request.method == "POST":
            status = 400
            if form.is_valid():
                try:
                    study = services.experiment_send_for_rating(
                        experiment=experiment, model_key=form.cleaned_data["model_key"],
                        n_scenarios=form.cleaned_data["n_scenarios"], clinicians=list(form.cleaned_data["clinicians"]),
                        overlap=form.cleaned_data["overlap"], actor=request.user,
                    )
                except ApplicationError as exc:  # a ConfigError or an annotation error: the form lists it
                    for message in exc.errors:
                        form.add_error(None, message)
                else:
                    if study.is_open:
                        messages.success(request, f"Rating study {study.name!r} is open for the chosen clinicians.")
                        return redirect("admin:training_experiment_report", experiment.pk)
                    # Replies that may name their model: a researcher keeps or excludes each before it opens.
                    messages.warning(request, f"Rating study {study.name!r} was created as a draft: the self-identification "
                                              "screen flagged replies to review (keep or exclude each) before it can open.")
                    return redirect("admin:annotation_ratingstudy_change", study.pk)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form, "experiment": experiment,
                   "title": f"Send {experiment.name} for clinician rating"}
        return render(request, "admin/training/experiment/send_for_rating.html", context, status=status)

    def job_cancel_view(self, request, pk):
        self._require(request, "change_job")
        job = get_object_or_404(Job, pk=pk)
        outcome = services.job_cancel(job=job, actor=request.user)
        return self._job_action_response(request, job, outcome)

    def job_retry_view(self, request, pk):
        self._require(request, "change_job")
        job = get_object_or_404(Job, pk=pk)
        outcome = services.job_retry(job=job, actor=request.user)
        return self._job_action_response(request, job, outcome)

    def _job_action_response(self, request, job, outcome):
        refused = outcome.startswith("not ")  # the services say "not cancelled: …" / "not retried: …"
        if request.headers.get("Accept", "").startswith("application/json"):
            return JsonResponse({"job": job.pk, "outcome": outcome, "refused": refused}, status=409 if refused else 200)
        (messages.warning if refused else messages.success)(request, f"Job {job.key}: {outcome}")
        if request.POST.get("return_to") == "job":
            return redirect("admin:training_job_change", job.pk)
        return redirect("admin:training_experiment_change", job.experiment_id)


def _withdrawal_cell(job: Job) -> str:
    if job.affected_by_withdrawal_at is None:
        return "—"
    return format_html('<strong class="errornote" title="{}">Withdrawn data: {}</strong>', job.withdrawal_note,
                       ", ".join(f"#{pk}" for pk in job.withdrawn_dataset_versions))


class WithdrawnFilter(admin.SimpleListFilter):
    title = "built from withdrawn data"
    parameter_name = "withdrawn"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        field = "affected_by_withdrawal_at__isnull" if queryset.model is Job else "job__affected_by_withdrawal_at__isnull"
        if self.value() in ("yes", "no"):
            return queryset.filter(**{field: self.value() == "no"})
        return queryset


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["__str__", "kind", "queue", "state", "recovery", "attempts", "progress_step", "progress_total",
                    "heartbeat_at", "withdrawal"]
    list_filter = ["state", "kind", "queue", WithdrawnFilter]
    readonly_fields = ["withdrawal_note", "recovery"] + [f.name for f in Job._meta.fields] + ["depends_on"]

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [path("<int:pk>/status.json", wrap(self.status_view), name="training_job_status")] + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """A job is a record of a run, not a form: its page is read-only and refreshes itself while it runs."""
        if not str(object_id).isdigit():
            raise Http404("No such job")
        job = get_object_or_404(Job.objects.select_related("experiment"), pk=int(object_id))
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "original": job,
            "title": f"Job {job.key} of {job.experiment.name}",
            "can_act": request.user.has_perm("training.change_job"),
            **selectors.job_page(job=job),
        }
        return render(request, "admin/training/job/detail.html", context)

    def status_view(self, request, pk):
        if not self.has_view_permission(request):
            raise PermissionDenied
        job = get_object_or_404(Job.objects.select_related("experiment"), pk=pk)
        return JsonResponse(selectors.job_progress(job=job, log_chars=selectors.PAGE_LOG_CHARS))

    @admin.display(description="recovery")
    def recovery(self, obj):
        return selectors.job_recovery_note(obj) or "—"

    @admin.display(description="withdrawal")
    def withdrawal(self, obj):
        return _withdrawal_cell(obj)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "job", "sha256", "model_version", "created_at", "withdrawal"]
    list_filter = ["kind", WithdrawnFilter]
    readonly_fields = [f.name for f in Artifact._meta.fields] + ["withdrawal"]

    @admin.display(description="withdrawal")
    def withdrawal(self, obj):
        return _withdrawal_cell(obj.job)

    def has_add_permission(self, request):
        return False
