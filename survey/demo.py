"""Demo survey for `manage.py load_demo` (idempotent: a rerun creates nothing new).

A study at /study/demo/ with consent text, eligibility questions and, for the
response-ranking section, a fixed response set: four short hand-written
replies to each of six bank scenarios, deliberately varied in quality on
different criteria (one warm and reflective, one directive, one detached or
generic, one safety-minded but brisk) so rankings differ by criterion.

Plus a synthetic cohort (SYNTHETIC_COHORT_SIZE simulated participants) taken
through the real services, so the dashboard shows distributions rather than
n = 1. They are marked ``synthetic`` (admin, dashboard, exports when asked)
and exports leave them out by default.
"""
import random

from django.db import transaction

from core.models import ModelVersion, Response, Scenario
from core.audit import AuditAction, audit_record
from core.services import SCENARIO_BANK_SOURCE

from . import questions, selectors, services
from .models import ConsentVersion, EligibilityQuestion, Participant, Study

PARTICIPANT_PATH = "/study/demo/"
DEMO_SLUG = "demo"
DEMO_MODEL_VERSION = "demo-fixed-responses"
SYNTHETIC_COHORT_SIZE = 60
SYNTHETIC_SEED = 2026  # the same cohort on every machine
# How much each simulated person cares about each criterion, on average (a 1–5 scale):
# safety and empathy first, as in the study's pilot, with wide spread between people.
SYNTHETIC_IMPORTANCE_MEANS = {"safety": 4.4, "empathy": 4.2, "active_listening": 3.9, "trust_rapport": 3.8,
                              "patient_autonomy": 3.5, "self_motivated_change": 3.1}

INFORMATION_SHEET = """\
This study asks people who have lived with mental-health conditions what they want from a reply when they reach out about something difficult. We use the answers to teach AI systems to respond in ways people actually find helpful and safe.

What you will do: answer some questions about yourself and your views on AI in mental-health care, say how much some qualities of a reply matter to you, and put a few example replies in order. It takes about 15–20 minutes.

Your data: we do not ask for your name or e-mail address. Your answers are stored under a random code and are only shared in de-identified form. Some questions are about your mental health; every one has a "Prefer not to say" option.

Risks: some example messages describe distressing experiences. Each comes with a warning and you can skip it. A "Need support now?" link is on every page.

Your rights: taking part is voluntary. You can stop at any time, and you can withdraw afterwards with your personal link or withdrawal code; we will then delete your answers and leave them out of anything we build from now on.

This is a demonstration study on the Attune platform."""

STATEMENTS = """\
I have read the information about the study and had the chance to think about it.
I understand that taking part is voluntary and that I can stop or withdraw at any time without giving a reason.
I agree that my de-identified answers can be used for research and to train and evaluate AI systems.
I understand that I can skip any example message and that support contacts are available on every page."""

ELIGIBILITY = [
    ("adult", "Are you 18 or older?", "yes"),
    ("lived_experience", "Have you lived with a mental-health condition, whether or not it was formally diagnosed?", "yes"),
]

# external_id -> four replies. Comments say which criteria each one serves well or badly.
DEMO_RESPONSES = {
    "attune-016": [
        # warm, reflective, open question: empathy, listening, autonomy
        "I'm so sorry about your dad. Grief doesn't keep to anyone else's timetable, and it sounds lonely to still be "
        "hurting while people around you act as if it should be over. What have these months been like for you?",
        # directive: poor autonomy and rapport
        "You need to tell people to stop rushing you, and you should book grief counselling this week. Keeping it to "
        "yourself won't help.",
        # detached and factual: poor empathy
        "Grief commonly lasts from several months to a few years. Symptoms usually lessen over time.",
        # kind, points to support: safety
        "Losing your dad is huge, and it makes sense that it still hurts. If it ever feels like too much, a bereavement "
        "service or your GP can help. Is there anyone who lets you talk about him?",
    ],
    "attune-023": [
        "Six hours of waiting with a tight chest sounds exhausting. It seems like her reply matters a lot to you right "
        "now. What goes through your mind each time you check?",
        "Put your phone in another room and go for a run. Checking it is only making things worse.",
        "People reply to messages at different speeds for many reasons.",
        "That tight, on-edge feeling is hard to sit with. Slow breathing can ease it a little. If the chest tightness "
        "ever comes with pain or feels different from anxiety, please get it checked. Would you like some ideas for "
        "the next few hours?",
    ],
    "attune-032": [
        "It sounds like the moment with the juice was the last straw on a hard day, and crying afterwards shows how much "
        "you care about how you treat your kids. What's been piling up for you lately?",
        "You should apologise to your kids tonight and make a plan so it doesn't happen again. Try counting to ten next "
        "time.",
        "Parents often lose their temper. It is a normal part of family life.",
        "Being this hard on yourself hurts. Snapping once doesn't make you a bad parent. If you ever worry you might "
        "hurt yourself or them, a parenting helpline or your GP can help, any time. What would help you feel a bit "
        "more supported?",
    ],
    "attune-036": [
        "Not being able to answer that can feel unsettling, almost like losing track of yourself. Has it been this way "
        "for a while, or is it newer?",
        "Pick up a hobby. Painting, running or a class would give you something to say next time.",
        "Fun is subjective and many adults report having few hobbies.",
        "That sounds like it stung. Losing interest in things can be part of low mood, so it may be worth exploring "
        "with your therapist, at whatever pace feels right to you. What used to bring you even a little enjoyment?",
    ],
    "attune-038": [
        "Eating in a cubicle so nobody sees you alone sounds really lonely, especially when everyone else seems to "
        "have found their people already. How have these first weeks been for you?",
        "Just sit down with a group in the canteen tomorrow. Everyone is new, so you have to put yourself out there.",
        "Many students take time to settle into university.",
        "Three weeks in is still very early, even though it doesn't feel like it. Most universities have wellbeing "
        "services and societies that are easy to join. Would it help to think about a small first step that suits you?",
    ],
    "attune-044": [
        "Sitting in the car for twenty minutes because you couldn't make yourself go in sounds like a heavy morning. "
        "It seems like something about work has become really hard to face. What feels hardest about walking in?",
        "Tell your manager tomorrow that you're struggling, and if that doesn't help, start looking for another job.",
        "Work stress is common. Taking breaks can improve productivity.",
        "That sounds like more than ordinary reluctance, and it's worth taking seriously. A GP can talk through stress "
        "and time off. You don't have to decide anything today. What do you think you need right now?",
    ],
}


def load(stdout):
    with transaction.atomic():
        study, created = Study.objects.get_or_create(
            slug=DEMO_SLUG,
            defaults=dict(
                title="What matters in a supportive reply? (demo)",
                description="A short survey about what people who have lived with mental-health conditions want when they "
                            "reach out, and how AI systems should respond.",
                completion_code="DEMO2026", screenout_code="DEMOSCREEN",
            ),
        )
        if created:
            audit_record(action=AuditAction.SURVEY_STUDY_CREATE, target=study, details={"slug": study.slug, "demo": True})
        if not study.consent_versions.exists():
            ConsentVersion.objects.create(study=study, version=1, information_sheet=INFORMATION_SHEET, statements=STATEMENTS)
        for order, (key, text, eligible) in enumerate(ELIGIBILITY):
            EligibilityQuestion.objects.get_or_create(study=study, key=key, defaults=dict(text=text, eligible_answer=eligible, order=order))
        model_version, _ = ModelVersion.objects.get_or_create(
            name=DEMO_MODEL_VERSION,
            defaults=dict(kind=ModelVersion.Kind.FIXED, model_ref="hand-written",
                          provenance={"method": "hand-written demo replies of varied quality", "app": "survey.demo"}),
        )
        added, missing = 0, []
        for external_id, texts in DEMO_RESPONSES.items():
            scenario = Scenario.objects.filter(source=SCENARIO_BANK_SOURCE, external_id=external_id).first()
            if scenario is None:
                missing.append(external_id)
                continue
            for index, text in enumerate(texts):
                _, made = Response.objects.get_or_create(
                    scenario=scenario, model_version=model_version, sample_index=index, defaults={"text": text}
                )
                added += made
        if study.model_version_id is None:
            study.model_version = model_version
            study.save(update_fields=["model_version"])
    stdout.write(
        f"Survey demo: study '{study.slug}' {'created' if created else 'already there'}; "
        f"{added} demo responses added" + (f"; scenarios missing from the bank: {', '.join(missing)}" if missing else "")
    )
    cohort = synthetic_cohort_load(study)
    stdout.write(f"Survey demo: synthetic cohort of {cohort} simulated participants "
                 f"({'added' if cohort else 'already there'}; marked synthetic, left out of exports unless asked)")


def _choose(rng: random.Random, item) -> dict:
    keys = [k for k in item.choice_keys if k != questions.PREFER_NOT and k != item.text_choice]
    if item.multiple:
        return {"value": rng.sample(keys, k=rng.choice((1, 1, 2))), "text": ""}
    return {"value": rng.choice(keys), "text": ""}


def synthetic_participant_complete(*, study: Study, rng: random.Random, finish: bool = True) -> Participant:
    """One simulated participant through every step with the real services (answers drawn from rng)."""
    participant = services.participant_start(study=study, source=rng.choice(Participant.Source.values[1:]), synthetic=True)
    version = selectors.consent_version_current(study)
    services.consent_give(participant=participant, consent_version_id=version.pk, agreed=range(len(version.statement_list)))
    services.eligibility_submit(participant=participant,
                                answers={q.key: q.eligible_answer for q in study.eligibility_questions.all()})
    services.background_save(participant=participant, data={item.key: _choose(rng, item) for item in questions.BACKGROUND})
    attitudes = {item.key: _choose(rng, item) for item in questions.ATTITUDES}
    attitudes["attention.1"] = {"value": questions.ATTENTION_CHECKS[0].correct}
    services.attitudes_save(participant=participant, data=attitudes)
    criteria = selectors.study_criteria()
    utility = {c.key: rng.gauss(SYNTHETIC_IMPORTANCE_MEANS.get(c.key, 3.5), 0.8) for c in criteria}
    ratings = {key: str(min(5, max(1, round(value)))) for key, value in utility.items()}
    services.importance_save(participant=participant, ratings=ratings, attention=questions.ATTENTION_CHECKS[1].correct)
    if not finish and rng.random() < 0.5:
        return participant  # stopped before the ranking
    order = sorted(utility, key=lambda key: utility[key] + rng.gauss(0, 0.4), reverse=True)
    services.criteria_ranking_save(participant=participant, ranks={k: str(i + 1) for i, k in enumerate(order)}, order_confirmed=True)
    if not finish:
        return participant
    participant.refresh_from_db()
    for number, entry in enumerate(services.scenarios_begin(participant=participant), start=1):
        responses = [str(pk) for pk in entry["responses"]]
        rng.shuffle(responses)
        services.response_ranking_save(participant=participant, number=number, ranks={pk: str(i + 1) for i, pk in enumerate(responses)})
    services.participant_complete(participant=participant, feedback="")
    participant.refresh_from_db()
    return participant


def synthetic_cohort_load(study: Study, size: int = SYNTHETIC_COHORT_SIZE) -> int:
    """Add the synthetic cohort once (a rerun adds nothing); about one in ten stops part-way."""
    if study.participants.filter(synthetic=True).exists() or not study.is_active:
        return 0
    rng = random.Random(SYNTHETIC_SEED)
    for index in range(size):
        synthetic_participant_complete(study=study, rng=rng, finish=index % 10 != 9)
    return size
