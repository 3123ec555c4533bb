"""The data migrations of the trust work, on rows written the old way: plain
Prolific ids become keyed hashes (or exclusions), and withdrawn and
screened-out rows are deleted and counted."""
import pytest

from survey.prolific import prolific_id_hash, prolific_session_hash
from tests.survey.conftest import migrate

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("back_to_the_latest_schema")]

BEFORE = [("survey", "0001_initial")]
AFTER = [("survey", "0004_screened_out_rows_deleted")]


def test_old_rows_are_hashed_excluded_and_deleted():
    apps = migrate(BEFORE)
    try:
        Study = apps.get_model("survey", "Study")
        Participant = apps.get_model("survey", "Participant")
        Answer = apps.get_model("survey", "Answer")
        study = Study.objects.create(slug="old", title="Old")
        kinds = {"in_progress": "pid-active", "screened_out": "pid-screened", "withdrawn": "pid-withdrawn"}
        rows = {}
        for sequence, (status, pid) in enumerate(kinds.items(), start=1):
            rows[status] = Participant.objects.create(
                study=study, sequence=sequence, token=f"tok{sequence}", pseudonym=f"P{sequence}", withdrawal_code=f"C{sequence}",
                seed=1, status=status, prolific_pid=pid, prolific_session_id=f"sess-{sequence}")
        Answer.objects.create(participant=rows["in_progress"], item_key="background.age_group", value="25_34")
    finally:
        apps = migrate(AFTER)
    Participant = apps.get_model("survey", "Participant")
    ProlificExclusion = apps.get_model("survey", "ProlificExclusion")
    Study = apps.get_model("survey", "Study")
    study = Study.objects.get(slug="old")
    assert list(Participant.objects.values_list("status", flat=True)) == ["in_progress"]
    active = Participant.objects.get()
    assert active.prolific_pid_hash == prolific_id_hash(study_id=study.pk, prolific_id="pid-active")
    assert active.prolific_session_hash == prolific_session_hash(study_id=study.pk, session_id="sess-1")
    assert set(ProlificExclusion.objects.values_list("prolific_pid_hash", flat=True)) == {
        prolific_id_hash(study_id=study.pk, prolific_id="pid-screened"), prolific_id_hash(study_id=study.pk, prolific_id="pid-withdrawn")}
    assert (study.withdrawn_count, study.screened_out_count) == (1, 1)
    assert apps.get_model("survey", "Answer").objects.filter(participant=active).count() == 1
