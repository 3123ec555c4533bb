"""Participant pages. Thin: find the participant by the token in the URL,
check the step is open (from the progress on their row), hand the POST to a
service, redirect (303) to the next step. A POST looks the participant up and
locks their row in one query, in a transaction the service's save runs in. Bad
input re-renders the page with the errors and status 400; nothing is saved."""
from __future__ import annotations

from functools import wraps

from django.core import signing
from django.db import transaction
from django.http import Http404, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from core.input import accepts_repeated
from core.network import client_ip
from core.ratelimit import FailureLimit
from core.selectors import helplines_by_region

from . import forms, questions, selectors, services
from .crisis import contains_crisis_language
from .exceptions import AlreadyStarted, InvalidAnswer, ProlificExcluded, StepNotAvailable
from .models import Participant, Study

NONCE_SALT = "survey.start"
SCREENED_OUT_SALT = "survey.screened-out"
NONCE_MAX_AGE = 60 * 60 * 24
PROLIFIC_PARAMS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")
# Checkbox groups: the only participant fields that may carry several values.
MULTIPLE_CHOICE_KEYS = tuple(key for key, item in questions.ALL_CHOICE_ITEMS.items() if item.multiple)
PROLIFIC_COMPLETE_URL = "https://app.prolific.com/submissions/complete?cc={code}"
ELIGIBILITY_INTRO = "A few questions to check this study is right for you. If it is not, we will not keep any of your answers."


class SeeOther(HttpResponseRedirect):
    status_code = 303


def step_url(participant: Participant, step: str) -> str:
    if step.startswith("scenario-"):
        return reverse("survey:scenario", args=[participant.token, int(step.split("-")[1])])
    if step == "done":
        return reverse("survey:done", args=[participant.token])
    return reverse(f"survey:{step}", args=[participant.token])


def status_url(participant: Participant) -> str | None:
    """Where a participant who is no longer answering belongs, if anywhere else."""
    if participant.status == Participant.Status.COMPLETED:
        return reverse("survey:done", args=[participant.token])
    if participant.status in (Participant.Status.SCREENED_OUT, Participant.Status.WITHDRAWN):
        return reverse("survey:ended", args=[participant.token])
    return None


def _page(request, template, participant, progress, step, context=None, status=200):
    if progress is None:
        progress = selectors.participant_progress(participant)
    base = {
        "participant": participant,
        "token": participant.token,
        "progress": progress,
        "step": step,
        # This page's own place in the survey, not the next open step: after the browser's
        # Back button the two differ.
        "step_number": progress.index(step) + 1,
        "step_title": selectors.step_title(step, progress),
        "consent_given": "consent" in progress.done,
        "resume_url": request.build_absolute_uri(reverse("survey:resume", args=[participant.token])),
        "show_support": request.GET.get("support") == "1",  # free text matched crisis language
        "errors": {},
    }
    base.update(context or {})
    if base["show_support"]:
        base["helpline_regions"] = helplines_by_region()
    return render(request, template, base, status=status)


def link_gone(request):
    """An unknown participant link, or one whose participant withdrew (their row is gone): a kind 404."""
    return render(request, "survey/link_gone.html", {}, status=404)


def _saved(participant: Participant, crisis: bool = False) -> SeeOther:
    """The redirect after a service saved this participant's step: to where the progress the
    service computed under the row lock says they go next (no further query)."""
    progress = getattr(participant, "progress_after_save", None)
    if progress is None:
        return _next(participant, crisis)
    return SeeOther(step_url(participant, progress.next_step) + ("?support=1" if crisis else ""))


def _next(participant: Participant, crisis: bool = False) -> SeeOther:
    """Where the participant belongs, from the row this request read (a POST read it under its
    lock, so nothing changed it since)."""
    url = status_url(participant) or step_url(participant, selectors.participant_progress(participant).next_step)
    return SeeOther(url + ("?support=1" if crisis else ""))


def _form_not_theirs(request):
    return render(request, "survey/error.html", {
        "message": "This form belongs to a different participant link, so nothing was saved. "
                   "Please continue from your own link.",
    }, status=400)


def participant_step(step: str | None):
    """Load the participant (404 for an unknown token), check the form belongs
    to them, and send them to where they belong if this step is not theirs."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, token, *args, **kwargs):
            if request.method == "POST":
                return _post(view, request, token, *args, **kwargs)
            participant = selectors.participant_by_token(token)
            if participant is None:
                return link_gone(request)
            elsewhere = status_url(participant)
            if elsewhere:
                return SeeOther(elsewhere)
            progress = selectors.participant_progress(participant)  # on the row: no query
            this_step = step if step != "scenario" else f"scenario-{kwargs.get('number')}"
            if this_step is not None and not progress.reachable(this_step):
                return SeeOther(step_url(participant, progress.next_step))
            try:
                return view(request, participant, progress, *args, **kwargs)
            except StepNotAvailable:
                if not Participant.objects.filter(pk=participant.pk).exists():
                    return SeeOther(reverse("survey:withdrawn"))  # withdrew (in another tab) just now
                return _next(participant)

        return wrapper

    return decorator


def _post(view, request, token, *args, **kwargs):
    """A step's POST in one transaction: the lookup locks the participant's row (one query), the
    service saves under that lock (the step checked there), and a page with errors (4xx)
    rolls back, so it never saves anything."""
    participant = None
    try:
        with transaction.atomic():
            participant = services.participant_lock_by_token(token)
            if participant is None:
                return link_gone(request)  # unknown, or withdrawn (their row is gone)
            if request.POST.get("participant") != participant.token:
                return _form_not_theirs(request)
            elsewhere = status_url(participant)
            if elsewhere:
                return SeeOther(elsewhere)
            response = view(request, participant, None, *args, **kwargs)
            if response.status_code >= 400:
                transaction.set_rollback(True)
            return response
    except StepNotAvailable:
        return _next(participant)  # as read under the lock; the save was rolled back


# --- Entry, resume ----------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def entry(request, slug):
    study = selectors.study_for_entry(slug)
    if study is None:
        raise Http404("No such study.")
    if request.method == "POST":
        try:
            nonce = signing.TimestampSigner(salt=NONCE_SALT).unsign(request.POST.get("start", ""), max_age=NONCE_MAX_AGE)
        except signing.BadSignature:
            return render(request, "survey/error.html", {
                "message": "This start page has expired. Please open the study link again.",
            }, status=400)
        prolific = {name: request.POST.get(name, "") for name in PROLIFIC_PARAMS}
        try:
            participant = services.participant_start(study=study, nonce=nonce, prolific=prolific, source=request.POST.get("source", ""))
        except AlreadyStarted:
            return render(request, "survey/already_started.html", {"study": study}, status=409)
        except ProlificExcluded:
            return render(request, "survey/not_again.html", {"study": study}, status=409)
        return SeeOther(reverse("survey:resume", args=[participant.token]))
    import secrets

    nonce = signing.TimestampSigner(salt=NONCE_SALT).sign(secrets.token_urlsafe(16))
    return render(request, "survey/entry.html", {
        "study": study,
        "start": nonce,
        "prolific": {name: request.GET.get(name, "")[:64] for name in PROLIFIC_PARAMS},
        "source": request.GET.get("source", "")[:16],
        "criteria_count": len(selectors.study_criteria()),
    })


def resume(request, token):
    participant = selectors.participant_by_token(token)
    if participant is None:
        return link_gone(request)
    return SeeOther(status_url(participant) or step_url(participant, selectors.participant_progress(participant).next_step))


def progress_api(request, token):
    participant = selectors.participant_by_token(token)
    if participant is None:
        return JsonResponse({"error": "not found"}, status=404)
    progress = selectors.participant_progress(participant)
    return JsonResponse({
        "status": participant.status,
        "next_step": progress.next_step if participant.is_active else None,
        "done": progress.done_count,
        "total": progress.total,
    })


# --- Consent, eligibility ------------------------------------------------------------------


@accepts_repeated("statement")
@participant_step("consent")
def consent(request, participant, progress):
    if request.method == "POST":
        agreed = request.POST.getlist("statement")
        try:
            services.consent_give(participant=participant, consent_version_id=request.POST.get("consent_version"), agreed=agreed)
        except InvalidAnswer as exc:
            context = _consent_context(participant)
            if context is None:
                return _consent_not_open(request)
            context.update(errors=exc.field_errors, ticked={str(a) for a in agreed})
            return _page(request, "survey/consent.html", participant, progress, "consent", context, status=400)
        return _saved(participant)
    context = _consent_context(participant)
    if context is None:
        return _consent_not_open(request)
    return _page(request, "survey/consent.html", participant, progress, "consent", context)


def _consent_context(participant):
    # No consent record before the consent step is done (the progress on the row says so).
    record = selectors.participant_consent(participant) if participant.steps_done else None
    version = record.consent_version if record else selectors.consent_version_current(participant.study)
    if version is None:
        return None
    return {"version": version, "statements": list(enumerate(version.statement_list)), "record": record, "ticked": set()}


def _consent_not_open(request):
    return render(request, "survey/error.html", {"message": "This study is not open yet (no consent form)."}, status=503)


def consent_copy(request, token):
    """The participant's own copy of what they agreed to: printable, or as a text file."""
    participant = selectors.participant_by_token(token)
    if participant is None:
        return link_gone(request)
    record = selectors.participant_consent(participant)
    if record is None:
        raise Http404("No consent has been recorded on this link.")
    context = {"record": record, "version": record.consent_version, "study": participant.study, "participant": participant}
    if request.GET.get("download") == "1":
        from django.template.loader import render_to_string

        response = HttpResponse(render_to_string("survey/consent_copy.txt", context), content_type="text/plain; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="{participant.study.slug}-consent-v{record.consent_version.version}.txt"'
        )
        return response
    return render(request, "survey/consent_copy.html", context)


@participant_step("eligibility")
def eligibility(request, participant, progress):
    if participant.eligible_at:
        return _next(participant)
    if request.method == "POST":
        # The service checks the answers against the study's questions (unknown and missing ones too).
        answers = forms.prefixed(request.POST, "eligibility-")
        try:
            eligible = services.eligibility_submit(participant=participant, answers=answers)
        except InvalidAnswer as exc:
            context = {"fields": forms.eligibility_fields(selectors.study_eligibility_questions(participant.study_id), answers,
                                                          exc.field_errors), "errors": exc.field_errors, "intro": ELIGIBILITY_INTRO}
            return _page(request, "survey/choices.html", participant, progress, "eligibility", context, status=400)
        if eligible:
            return _saved(participant)
        # Nothing of theirs is kept, so the end page is addressed by a signed note of the study and
        # whether they came from Prolific (for the screen-out code), not by their link.
        note = signing.dumps({"study": participant.study_id, "prolific": participant.arrived_from_prolific}, salt=SCREENED_OUT_SALT)
        return SeeOther(reverse("survey:screened-out", args=[note]))
    return _page(request, "survey/choices.html", participant, progress, "eligibility",
                 {"fields": forms.eligibility_fields(selectors.study_eligibility_questions(participant.study_id), {}, {}),
                  "intro": ELIGIBILITY_INTRO})


# --- Background, attitudes, importance --------------------------------------------------------


def _choice_page(request, participant, progress, step, items, save, template, extra=None):
    if request.method == "POST":
        data = forms.choices_from_post(request.POST, items)
        try:
            crisis = save(participant=participant, data=data)
        except InvalidAnswer as exc:
            context = {"fields": forms.choice_fields(items, data, exc.field_errors), **(extra or {}),
                       "show_support": any(contains_crisis_language(entry["text"]) for entry in data.values())}
            return _page(request, template, participant, progress, step, {**context, "errors": exc.field_errors}, status=400)
        return _saved(participant, crisis)
    saved = selectors.participant_answers(participant)
    data = {key: {"value": answer.value if not isinstance(answer.value, int) else str(answer.value), "text": answer.text}
            for key, answer in saved.items()}
    return _page(request, template, participant, progress, step, {"fields": forms.choice_fields(items, data, {}), **(extra or {})})


@accepts_repeated(*MULTIPLE_CHOICE_KEYS)
@participant_step("background")
def background(request, participant, progress):
    return _choice_page(request, participant, progress, "background", questions.BACKGROUND, services.background_save,
                        "survey/choices.html", {"intro": "These questions help us describe who took part. Every question has a “Prefer not to say” option."})


@accepts_repeated(*MULTIPLE_CHOICE_KEYS)
@participant_step("attitudes")
def attitudes(request, participant, progress):
    items = forms.with_attention(questions.ATTITUDES, questions.ATTENTION_CHECKS[0])
    return _choice_page(request, participant, progress, "attitudes", items, services.attitudes_save, "survey/choices.html",
                        {"intro": "How much do you agree or disagree with each statement? There are no right or wrong answers."})


@participant_step("importance")
def importance(request, participant, progress):
    check = questions.ATTENTION_CHECKS[1]
    if request.method == "POST":
        ratings = forms.prefixed(request.POST, "importance-")
        attention = request.POST.get(check.key, "")
        try:
            services.importance_save(participant=participant, ratings=ratings, attention=attention)
        except InvalidAnswer as exc:
            criteria = selectors.criteria_shown_order(participant, selectors.study_criteria(), "importance")
            context = forms.importance_context(criteria, ratings, attention, check, exc.field_errors)
            return _page(request, "survey/importance.html", participant, progress, "importance", {**context, "errors": exc.field_errors}, status=400)
        return _saved(participant)
    criteria = selectors.criteria_shown_order(participant, selectors.study_criteria(), "importance")
    saved = selectors.participant_importance(participant)
    attention = selectors.participant_answer(participant, check.key)
    context = forms.importance_context(criteria, {k: str(v) for k, v in saved.items()}, attention.value if attention else "", check, {})
    return _page(request, "survey/importance.html", participant, progress, "importance", context)


# --- Rankings -------------------------------------------------------------------------------


@participant_step("criteria-ranking")
def criteria_ranking(request, participant, progress):
    if request.method == "POST":
        ranks = forms.prefixed(request.POST, "rank-")
        order_confirmed = request.POST.get("order_confirmed") == "yes"
        try:
            services.criteria_ranking_save(participant=participant, ranks=ranks, order_confirmed=order_confirmed)
        except InvalidAnswer as exc:
            criteria = selectors.criteria_shown_order(participant, selectors.study_criteria(), "ranking")
            context = {"ranking": forms.criteria_ranking_items(criteria, ranks), "errors": exc.field_errors,
                       "order_confirmed": order_confirmed}
            return _page(request, "survey/criteria_ranking.html", participant, progress, "criteria-ranking", context, status=400)
        return _saved(participant)
    criteria = selectors.criteria_shown_order(participant, selectors.study_criteria(), "ranking")
    saved = selectors.participant_criteria_ranking(participant)
    ranks = {key: str(i + 1) for i, key in enumerate(saved.ranking)} if saved else {}
    return _page(request, "survey/criteria_ranking.html", participant, progress, "criteria-ranking",
                 {"ranking": forms.criteria_ranking_items(criteria, ranks),
                  "order_confirmed": bool(saved) and saved.basis == saved.Basis.CONFIRMED})


@participant_step("before-scenarios")
def before_scenarios(request, participant, progress):
    if request.method == "POST":
        services.scenarios_begin(participant=participant)
        return _saved(participant)
    if participant.scenario_plan is None:
        participant = services.scenario_plan_fix(participant)
        progress = selectors.participant_progress(participant)
    return _page(request, "survey/before_scenarios.html", participant, progress, "before-scenarios",
                 {"screens": len(participant.scenario_plan or [])})


@participant_step("scenario")
def scenario(request, participant, progress, number):
    if not 1 <= number <= len(participant.scenario_plan or []):
        return _next(participant)
    if request.method == "POST":
        skip = "skip" in request.POST
        ranks = forms.prefixed(request.POST, "rank-")
        try:
            services.response_ranking_save(participant=participant, number=number, ranks=ranks, skip=skip)
        except InvalidAnswer as exc:
            screen = selectors.response_screen(participant, number)
            context = {"screen": screen, "ranking": forms.response_ranking_items(screen["responses"], ranks), "errors": exc.field_errors}
            return _page(request, "survey/scenario.html", participant, progress, f"scenario-{number}", context, status=400)
        return _saved(participant)
    screen = selectors.response_screen(participant, number)
    ranks = {str(pk): str(i + 1) for i, pk in enumerate(screen["saved_ranking"] or [])}
    return _page(request, "survey/scenario.html", participant, progress, f"scenario-{number}",
                 {"screen": screen, "ranking": forms.response_ranking_items(screen["responses"], ranks),
                  "screens": len(participant.scenario_plan or [])})


@participant_step("closing")
def closing(request, participant, progress):
    if request.method == "POST":
        feedback = request.POST.get("feedback", "")
        try:
            crisis = services.participant_complete(participant=participant, feedback=feedback)
        except InvalidAnswer as exc:
            return _page(request, "survey/closing.html", participant, progress, "closing",
                         {"feedback": feedback, "errors": exc.field_errors, "show_support": contains_crisis_language(feedback)},
                         status=400)
        return _saved(participant, crisis)
    saved = selectors.participant_answer(participant, questions.FEEDBACK_KEY)
    return _page(request, "survey/closing.html", participant, progress, "closing",
                 {"feedback": saved.text if saved else "", "had_scenarios": bool(participant.scenario_plan)})


# --- End pages, withdrawal -----------------------------------------------------------------------


def done(request, token):
    participant = selectors.participant_by_token(token)
    if participant is None:
        return link_gone(request)
    if participant.status != Participant.Status.COMPLETED:
        return SeeOther(status_url(participant) or reverse("survey:resume", args=[token]))
    study = participant.study
    # Decided by what was recorded at the start, never by this request's parameters.
    prolific_code = study.completion_code if participant.arrived_from_prolific else ""
    prolific_url = PROLIFIC_COMPLETE_URL.format(code=prolific_code) if prolific_code else ""
    return render(request, "survey/done.html", {
        "participant": participant, "study": study, "prolific_code": prolific_code, "prolific_url": prolific_url, "token": token,
        "show_support": request.GET.get("support") == "1",
        "helpline_regions": helplines_by_region() if request.GET.get("support") == "1" else [],
        "resume_url": request.build_absolute_uri(reverse("survey:resume", args=[token])),
        "consent_given": True,  # a completed participant consented
    })


def ended(request, token):
    participant = selectors.participant_by_token(token)
    if participant is None:
        return link_gone(request)
    if participant.status not in (Participant.Status.SCREENED_OUT, Participant.Status.WITHDRAWN):
        return SeeOther(reverse("survey:resume", args=[token]))
    study = participant.study
    screened_out = participant.status == Participant.Status.SCREENED_OUT
    prolific_code = study.screenout_code if screened_out and participant.arrived_from_prolific else ""
    prolific_url = PROLIFIC_COMPLETE_URL.format(code=prolific_code) if prolific_code else ""
    return render(request, "survey/ended.html", {
        "participant": participant, "study": study, "screened_out": screened_out,
        "prolific_code": prolific_code, "prolific_url": prolific_url,
    })


@require_http_methods(["GET", "POST"])
def withdraw(request, token):
    participant = selectors.participant_by_token(token)
    if participant is None:
        return link_gone(request)
    if request.method == "POST":
        if request.POST.get("participant") != participant.token:
            return render(request, "survey/error.html", {"message": "This form belongs to a different participant link; nothing was changed."}, status=400)
        if request.POST.get("confirm") != "yes":
            return render(request, "survey/withdraw.html", {"participant": participant, "token": token,
                                                            "error": "Please tick the box to confirm."}, status=400)
        services.participant_withdraw(participant=participant, via="resume_link")
        return SeeOther(reverse("survey:withdrawn"))
    if participant.status == Participant.Status.WITHDRAWN:
        return SeeOther(reverse("survey:ended", args=[token]))
    return render(request, "survey/withdraw.html", {"participant": participant, "token": token})


def screened_out(request, note):
    try:
        values = signing.loads(note, salt=SCREENED_OUT_SALT)
        study = Study.objects.get(pk=int(values["study"]))
    except (signing.BadSignature, KeyError, TypeError, ValueError, Study.DoesNotExist):
        return link_gone(request)
    prolific_code = study.screenout_code if values.get("prolific") is True else ""
    return render(request, "survey/ended.html", {
        "study": study, "screened_out": True, "prolific_code": prolific_code,
        "prolific_url": PROLIFIC_COMPLETE_URL.format(code=prolific_code) if prolific_code else "",
    })


def withdrawn(request):
    """Where a withdrawal ends: addressed by nothing of the person's, since nothing of theirs is left."""
    return render(request, "survey/withdrawn.html", {})


# Withdrawal by code: failed attempts are limited per code and, with a higher
# ceiling, per address, so one shared address (a clinic, a university) cannot
# lock the form for everyone and one code cannot be hammered from many.
WITHDRAWAL_FAILURES_PER_CODE = FailureLimit("withdraw-code", limit=5)
WITHDRAWAL_FAILURES_PER_ADDRESS = FailureLimit("withdraw-address", limit=50)


def _withdrawal_code_key(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


@require_http_methods(["GET", "POST"])
def withdraw_by_code(request):
    """Withdraw with the personal code shown during the survey."""
    context = {"done": False, "error": "", "code": ""}
    if request.method == "POST":
        code = request.POST.get("code", "")[:32]
        context["code"] = code
        address, code_key = client_ip(request) or "unknown", _withdrawal_code_key(code)
        if WITHDRAWAL_FAILURES_PER_ADDRESS.exceeded(address):
            context["error"] = ("Too many codes have been tried from this connection in the last hour. "
                                "Please wait an hour and try again, or contact the research team.")
            return render(request, "survey/withdraw_code.html", context, status=429)
        if WITHDRAWAL_FAILURES_PER_CODE.exceeded(code_key):
            context["error"] = ("This code has been tried too many times in the last hour. "
                                "Please wait an hour and try again, or contact the research team.")
            return render(request, "survey/withdraw_code.html", context, status=429)
        participant = selectors.participant_by_withdrawal_code(code)
        if participant is None:
            WITHDRAWAL_FAILURES_PER_ADDRESS.record_failure(address)
            WITHDRAWAL_FAILURES_PER_CODE.record_failure(code_key)
            context["error"] = ("We could not find that code. Please check it (it looks like ABCDE-23456) and try again. "
                                "If you have already withdrawn, your answers are deleted and there is nothing more to do.")
            return render(request, "survey/withdraw_code.html", context, status=400)
        if request.POST.get("confirm") != "yes":
            WITHDRAWAL_FAILURES_PER_CODE.record_failure(code_key)
            context["error"] = "Please tick the box to confirm that you want to withdraw."
            return render(request, "survey/withdraw_code.html", context, status=400)
        services.participant_withdraw(participant=participant, via="code")
        context["done"] = True
    return render(request, "survey/withdraw_code.html", context)
