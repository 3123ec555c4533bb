"""Each page: find the participant by the link's token, show the page's fields with what
was saved; a POST upserts one answer (the whole page as JSON) and redirects (303) to the
next page in a fixed order. No progress check, no audit, no row lock: the bare cost."""
import secrets

from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import render

from survey import questions  # plain data (no Django): the same questions as Attune's pages

from .models import Answer, Participant

CRITERIA = ("empathy", "active_listening", "self_motivated_change", "trust_rapport", "patient_autonomy")
SCREENS = 3
RESPONSES = 4
STEPS = ["consent", "eligibility", "background", "attitudes", "importance", "criteria-ranking", "before-scenarios",
         *[f"scenario-{n}" for n in range(1, SCREENS + 1)], "closing"]
SCENARIO_TEXT = ("I have been finding it hard to get out of bed for weeks and I do not know who to talk to. "
                 "My friends think I am just tired, but it feels heavier than that. ") * 3
RESPONSE_TEXT = ("That sounds really heavy to carry, and it makes sense that you feel worn down. "
                 "Would it help to talk about what the mornings are like for you? ") * 2


class SeeOther(HttpResponseRedirect):
    status_code = 303


def _choice(item):
    return {"key": item.key, "label": item.label, "multiple": item.multiple,
            "options": [{"value": k, "label": label, "id": f"{item.key}-{i}"} for i, (k, label) in enumerate(item.choices)]}


def _radio(key, label, choices):
    return {"key": key, "label": label, "multiple": False,
            "options": [{"value": k, "label": text, "id": f"{key}-{i}"} for i, (k, text) in enumerate(choices)]}


def _fields(step):
    if step == "eligibility":
        yes_no = (("yes", "Yes"), ("no", "No"))
        return [_radio("eligibility-adult", "Are you 18 or older?", yes_no),
                _radio("eligibility-lived_experience", "Have you lived with a mental-health condition?", yes_no)]
    if step == "background":
        return [_choice(item) for item in questions.BACKGROUND]
    if step == "attitudes":
        items = list(questions.ATTITUDES)
        items.insert(questions.ATTENTION_POSITION["attention.1"], questions.ATTENTION_CHECKS[0])
        return [_choice(item) for item in items]
    if step == "importance":
        fields = [_radio(f"importance-{key}", f"How important is {key.replace('_', ' ')}?", questions.IMPORTANCE_5) for key in CRITERIA]
        fields.insert(3, _choice(questions.ATTENTION_CHECKS[1]))
        return fields
    return []


def entry(request, slug):
    if request.method == "POST":
        participant = Participant.objects.create()
        return SeeOther(f"/study/r/{participant.token}/")
    return render(request, "anchor/entry.html", {"start": secrets.token_urlsafe(16),
                                                 "prolific": {k: request.GET.get(k, "") for k in ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")}})


def _participant(token):
    participant = Participant.objects.filter(token=token).first()
    if participant is None:
        raise Http404("No such participant.")
    return participant


def resume(request, token):
    return SeeOther(f"/study/r/{_participant(token).token}/consent/")


def _url(token, step):
    if step.startswith("scenario-"):
        return f"/study/r/{token}/scenario/{step.split('-')[1]}/"
    return f"/study/r/{token}/{step}/"


def page(request, token, step, number=None):
    if step == "scenario":
        step = f"scenario-{number}"
    if step not in STEPS:
        raise Http404("No such page.")
    participant = _participant(token)
    if request.method == "POST":
        data = {key: request.POST.getlist(key) for key in request.POST if key != "csrfmiddlewaretoken"}
        Answer.objects.bulk_create([Answer(participant=participant, page=step, data=data)], update_conflicts=True,
                                   unique_fields=["participant", "page"], update_fields=["data", "updated_at"])
        index = STEPS.index(step)
        return SeeOther(_url(token, STEPS[index + 1]) if index + 1 < len(STEPS) else f"/study/r/{token}/done/")
    saved = Answer.objects.filter(participant=participant, page=step).values_list("data", flat=True).first() or {}
    context = {"token": token, "step": step, "number": STEPS.index(step) + 1, "total": len(STEPS), "fields": _fields(step),
               "saved": saved}
    if step == "consent":
        context["statements"] = ["I have read the information.", "I agree to take part.", "I know I can withdraw."]
    elif step == "criteria-ranking":
        context["ranks"] = [{"key": key, "title": key.replace("_", " ").capitalize()} for key in CRITERIA]
    elif step.startswith("scenario-"):
        n = int(step.split("-")[1])
        context.update(scenario=SCENARIO_TEXT, ranks=[{"key": str(n * 10 + i), "title": f"Response {chr(65 + i)}",
                                                       "detail": RESPONSE_TEXT} for i in range(RESPONSES)])
    return render(request, "anchor/page.html", context)


def done(request, token):
    _participant(token)
    return render(request, "anchor/done.html", {})


def healthz(request):
    return HttpResponse("ok")
