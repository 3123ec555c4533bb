"""Factories and helpers for survey tests."""
import factory
import numpy as np

from core.models import ModelVersion, Response, Scenario
from survey import questions, selectors, services
from survey.models import ConsentVersion, EligibilityQuestion, Participant, Study

STATEMENTS = "I have read the information.\nI agree to take part.\nI know I can withdraw."


class StudyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Study
        skip_postgeneration_save = True

    slug = factory.Sequence(lambda n: f"study-{n}")
    title = factory.Sequence(lambda n: f"Study {n}")
    completion_code = "DONE123"
    screenout_code = "SCREEN456"

    @factory.post_generation
    def setup(self, create, extracted, **kwargs):
        if not create:
            return
        ConsentVersion.objects.create(study=self, version=1, information_sheet="About the study.", statements=STATEMENTS)
        EligibilityQuestion.objects.create(study=self, key="adult", text="Are you 18 or older?", eligible_answer="yes", order=0)
        EligibilityQuestion.objects.create(study=self, key="lived", text="Have you lived with a mental-health condition?",
                                           eligible_answer="yes", order=1)


def response_set(*, scenarios=5, per_scenario=4, name="fixed-test"):
    """A FIXED model version with ``per_scenario`` responses to each of ``scenarios`` new scenarios."""
    version = ModelVersion.objects.create(name=name, kind=ModelVersion.Kind.FIXED, model_ref="test")
    for s in range(scenarios):
        scenario = Scenario.objects.create(text=f"{name}: I have been struggling with something hard, number {s}.",
                                           source="test", external_id=f"{name}-{s}")
        for i in range(per_scenario):
            Response.objects.create(scenario=scenario, model_version=version, sample_index=i,
                                    text=f"{name} reply {i} to scenario {s}: that sounds hard.")
    return version


def study_with_responses(*, scenarios=5, name="fixed-test", **fields):
    """A study (StudyFactory with ``fields``) whose model version is a new response set (see response_set)."""
    study = StudyFactory(**fields)
    study.model_version = response_set(scenarios=scenarios, name=name)
    study.save()
    return study


class ParticipantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Participant

    study = factory.SubFactory(StudyFactory)
    sequence = factory.Sequence(lambda n: n + 1)


DEFAULT_BACKGROUND = {
    "background.age_group": "25_34", "background.gender": "woman", "background.ethnicity": "white",
    "background.diagnoses": ["depression", "anxiety"], "background.severity": "moderate",
    "background.treatment": "therapy", "background.ai_use": "sometimes",
}


def background_data(**overrides):
    values = {**DEFAULT_BACKGROUND, **{f"background.{k}": v for k, v in overrides.items()}}
    return {key: {"value": value, "text": ""} for key, value in values.items()}


def attitudes_data(values=(4, 3, 4, 5, 2), attention="disagree"):
    data = {item.key: {"value": str(v)} for item, v in zip(questions.ATTITUDES, values)}
    data["attention.1"] = {"value": attention}
    return data


def full_ranks(keys):
    return {k: str(i + 1) for i, k in enumerate(keys)}


QUESTIONNAIRE_STEPS = ("consent", "eligibility", "background", "attitudes", "importance")


def participant_through(study, last_step, *, source="", prolific=None, background=None, attention="disagree"):
    """A new participant who has saved, with the services, every step from consent up to and including
    ``last_step`` (one of QUESTIONNAIRE_STEPS): every statement agreed, eligible, the given or default
    answers, every criterion rated 4; ``attention`` is the first attention check's answer."""
    steps = QUESTIONNAIRE_STEPS[:QUESTIONNAIRE_STEPS.index(last_step) + 1]
    participant = services.participant_start(study=study, source=source, prolific=prolific)
    version = selectors.consent_version_current(study)
    services.consent_give(participant=participant, consent_version_id=version.pk, agreed=range(len(version.statement_list)))
    if "eligibility" in steps:
        services.eligibility_submit(participant=participant,
                                    answers={q.key: q.eligible_answer for q in study.eligibility_questions.all()})
    if "background" in steps:
        services.background_save(participant=participant, data=background or background_data())
    if "attitudes" in steps:
        services.attitudes_save(participant=participant, data=attitudes_data(attention=attention))
    if "importance" in steps:
        services.importance_save(participant=participant, ratings={k: "4" for k in keys()}, attention="strongly_agree")
    return participant


def complete_participant(study, *, ratings=None, ranking=None, background=None, attention=("disagree", "strongly_agree"),
                         source="", prolific=None, skip_scenarios=False, feedback=""):
    """Run a participant through every step with the services; returns the participant (completed)."""
    participant = participant_through(study, "attitudes", source=source, prolific=prolific, background=background,
                                      attention=attention[0])
    criteria = selectors.study_criteria()
    keys = [c.key for c in criteria]
    ratings = ratings or {k: 4 for k in keys}
    services.importance_save(participant=participant, ratings={k: str(v) for k, v in ratings.items()}, attention=attention[1])
    services.criteria_ranking_save(participant=participant, ranks=full_ranks(ranking or keys), order_confirmed=True)
    participant.refresh_from_db()
    plan = services.scenarios_begin(participant=participant) if selectors.participant_progress(participant).reachable("before-scenarios") else []
    participant.refresh_from_db()
    for number, entry in enumerate(plan, start=1):
        if skip_scenarios:
            services.response_ranking_save(participant=participant, number=number, ranks=None, skip=True)
        else:
            services.response_ranking_save(participant=participant, number=number, ranks=full_ranks([str(r) for r in entry["responses"]]))
    services.participant_complete(participant=participant, feedback=feedback)
    participant.refresh_from_db()
    return participant


def keys():
    return [c.key for c in selectors.study_criteria()]


def _cohort(study, n, order, rng, gender_cycle=("woman", "man", "non_binary"), sources=("prolific", "university")):
    """Participants whose rankings follow a Plackett–Luce model with strengths decreasing along ``order``."""
    strengths = np.exp(np.linspace(1.5, -1.5, len(order)))
    people = []
    for i in range(n):
        remaining, ranking = list(range(len(order))), []
        while remaining:
            p = strengths[remaining] / strengths[remaining].sum()
            pick = rng.choice(remaining, p=p)
            ranking.append(order[pick])
            remaining.remove(pick)
        ratings = {k: max(1, 5 - ranking.index(k) // 2) for k in order}
        people.append(complete_participant(
            study, ranking=ranking, ratings=ratings, source=sources[i % len(sources)],
            background=background_data(gender=gender_cycle[i % len(gender_cycle)], ethnicity=("white", "asian", "black")[i % 3],
                                       age_group=("18_24", "35_44")[i % 2]),
        ))
    return people
