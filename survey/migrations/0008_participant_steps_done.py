"""The participant's progress kept on their row (``steps_done``) instead of counted
from their answers on every request; existing rows get it from their answers, by
the rules the count used (the item keys are written out here so that later changes
to survey.questions do not change what this migration did)."""
from django.db import migrations, models
from django.db.models import Count

BACKGROUND = ["background.age_group", "background.gender", "background.ethnicity", "background.diagnoses",
              "background.severity", "background.treatment", "background.ai_use"]
ATTITUDES = ["attitude.accessible", "attitude.empathic", "attitude.errors", "attitude.complement", "attitude.trust",
             "attention.1"]
FIXED_STEPS = ["consent", "eligibility", "background", "attitudes", "importance", "criteria-ranking"]


def _counts(model, participant_ids, **filters):
    rows = (model.objects.filter(participant_id__in=participant_ids, **filters).order_by()
            .values("participant_id").annotate(n=Count("id")).values_list("participant_id", "n"))
    return dict(rows)


def fill_steps_done(apps, schema_editor):
    Participant = apps.get_model("survey", "Participant")
    Answer = apps.get_model("survey", "Answer")
    ImportanceRating = apps.get_model("survey", "ImportanceRating")
    CriteriaRanking = apps.get_model("survey", "CriteriaRanking")
    ConsentRecord = apps.get_model("survey", "ConsentRecord")
    ResponseRanking = apps.get_model("survey", "ResponseRanking")
    Criterion = apps.get_model("core", "Criterion")
    criteria_n = Criterion.objects.filter(is_therapeutic=True).count()
    participants = list(Participant.objects.select_related("study").order_by("pk"))
    for start in range(0, len(participants), 500):
        batch = participants[start:start + 500]
        ids = [p.pk for p in batch]
        consented = set(ConsentRecord.objects.filter(participant_id__in=ids).values_list("participant_id", flat=True))
        background = _counts(Answer, ids, item_key__in=BACKGROUND)
        attitudes = _counts(Answer, ids, item_key__in=ATTITUDES)
        check_2 = set(Answer.objects.filter(participant_id__in=ids, item_key="attention.2").values_list("participant_id", flat=True))
        ratings = _counts(ImportanceRating, ids)
        ranked = set(CriteriaRanking.objects.filter(participant_id__in=ids).values_list("participant_id", flat=True))
        screens = _counts(ResponseRanking, ids)
        for p in batch:
            if p.scenario_plan is not None:
                n_screens = len(p.scenario_plan)
            else:
                n_screens = p.study.scenarios_per_participant if p.study.model_version_id else 0
            steps = list(FIXED_STEPS)
            if n_screens:
                steps += ["before-scenarios"] + [f"scenario-{n}" for n in range(1, n_screens + 1)]
            steps.append("closing")
            if p.status == "completed":
                p.steps_done = len(steps)
            else:
                done = set()
                if p.pk in consented:
                    done.add("consent")
                if p.eligible_at:
                    done.add("eligibility")
                if background.get(p.pk, 0) >= len(BACKGROUND):
                    done.add("background")
                if attitudes.get(p.pk, 0) >= len(ATTITUDES):
                    done.add("attitudes")
                if p.pk in check_2 and ratings.get(p.pk, 0) >= criteria_n:
                    done.add("importance")
                if p.pk in ranked:
                    done.add("criteria-ranking")
                if p.scenarios_intro_at:
                    done.add("before-scenarios")
                done.update(f"scenario-{n}" for n in range(1, screens.get(p.pk, 0) + 1))
                # The next step was the first one not done; the steps before it are the ones done.
                p.steps_done = next((i for i, step in enumerate(steps) if step not in done), len(steps))
        Participant.objects.bulk_update(batch, ["steps_done"])


class Migration(migrations.Migration):

    dependencies = [
        ("core", "0003_audit_subjects"),
        ("survey", "0007_participant_synthetic"),
    ]

    operations = [
        migrations.AddField(
            model_name="participant",
            name="steps_done",
            field=models.PositiveSmallIntegerField(
                default=0, editable=False, help_text="Steps done, in survey order; the next step is the one after them."),
        ),
        migrations.RunPython(fill_steps_done, migrations.RunPython.noop),
    ]
