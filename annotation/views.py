"""Clinician pages: the queue, one item per page, undo. Thin: parse, call a
service or selector, render. Every URL carries an opaque token, never an id."""
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from core import roles

from . import selectors, services
from .exceptions import AnnotationError, StudyNotOpen

CHOICE_PREFIX = "choice-"


def clinician_required(view):
    @login_required
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not roles.is_clinician(request.user):
            raise PermissionDenied("Only clinicians rate responses.")
        return view(request, *args, **kwargs)

    return wrapped


def answers_from_post(data) -> dict:
    """The rating form's fields, as the services take them (screen terms)."""
    return {
        "choices": {k[len(CHOICE_PREFIX):]: v for k, v in data.items() if k.startswith(CHOICE_PREFIX)},
        "unsafe_left": data.get("unsafe_left", ""),
        "unsafe_right": data.get("unsafe_right", ""),
        "comment": data.get("comment", ""),
        "time_on_task_ms": data.get("time_on_task_ms") or None,
    }


@clinician_required
def queue(request):
    return render(request, "annotation/queue.html", {"entries": selectors.clinician_queue(user=request.user)})


@clinician_required
def next_item(request, study_token):
    study = selectors.study_for_clinician(token=study_token, user=request.user)
    if not study.is_open:
        messages.info(request, "That study is closed.")
        return redirect("annotation:queue")
    assignment = selectors.assignment_next(study=study, user=request.user)
    if assignment is None:
        messages.success(request, "You have rated every item in this study. Thank you.")
        return redirect("annotation:queue")
    return redirect("annotation:item", token=assignment.token)


@clinician_required
@require_http_methods(["GET", "POST"])
def item(request, token):
    assignment = selectors.assignment_for_clinician(token=token, user=request.user)
    if not assignment.study.is_open:
        raise StudyNotOpen("This study is closed; its items can no longer be rated.")
    form_error = None
    if request.method == "POST":
        answers = answers_from_post(request.POST)
        try:
            services.judgment_submit(assignment=assignment, clinician=request.user, **answers)
        except AnnotationError as error:
            if error.status_code != 400:
                raise  # not the form's to show: core.error_handlers renders it
            form_error = error
        else:
            return redirect("annotation:next", study_token=assignment.study.token)
    else:
        services.assignment_mark_shown(assignment=assignment, clinician=request.user)
    page = selectors.rating_page(assignment=assignment)
    if form_error is not None:
        # Show what was posted, so nothing typed is lost.
        posted = answers_from_post(request.POST)
        keys = {d["key"] for d in page["dimensions"]}
        for dimension in page["dimensions"]:
            value = posted["choices"].get(dimension["key"], "")
            dimension["choice"] = value if value in services.SCREEN_CHOICES else ""
        page["unsafe_left"] = bool(posted["unsafe_left"])
        page["unsafe_right"] = bool(posted["unsafe_right"])
        page["comment"] = posted["comment"]
        page["unknown_keys"] = sorted(set(posted["choices"]) - keys)
    context = {
        "page": page,
        "error": form_error,
        "draft_url": reverse("annotation:api-draft", kwargs={"token": assignment.token}),
        "undo_url": reverse("annotation:undo", kwargs={"study_token": assignment.study.token}),
    }
    return render(request, "annotation/item.html", context, status=400 if form_error else 200)


@clinician_required
@require_POST
def undo(request, study_token):
    study = selectors.study_for_clinician(token=study_token, user=request.user)
    assignment = services.judgment_undo(study=study, clinician=request.user)
    messages.info(request, "Your last answer was withdrawn. Change it and save again.")
    return redirect("annotation:item", token=assignment.token)
