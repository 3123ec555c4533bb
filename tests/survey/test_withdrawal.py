"""Withdrawal leaves nothing that links back to the person: after it, a dump of
the whole database, every file under the artifacts directory, the cache and
the application log hold neither their pseudonymous ids nor anything they
wrote."""
import logging
import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from core.models import AuditEvent, AuditSubject
from survey import selectors, services
from survey.models import DatasetVersion, Participant, ProlificExclusion
from tests.survey.factories import complete_participant, study_with_responses
from tests.survey.test_views import (
    background_post,
    from_attitudes_to_the_scenarios,
    post,
    ranking_post,
    start,
    through_consent_and_eligibility,
    url,
)

pytestmark = pytest.mark.django_db(transaction=True)  # pg_dump reads from its own connection: the rows must be committed

# Unique to the run, so that no file or cache entry another test left behind can match.
RUN_MARK = secrets.token_hex(4)
PHRASE = f"my lighthouse keeper grandmother Wilhelmina {RUN_MARK}"
CRISIS_PHRASE = f"sometimes I feel like ending it all, {RUN_MARK}"
PROLIFIC_ID = f"65f0c0ffee1234{RUN_MARK}ab"


def database_dump() -> str:
    """Every row of every table, as text."""
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        env = {**os.environ, "PGPASSWORD": db.get("PASSWORD") or ""}
        command = ["pg_dump", "--data-only", "--no-owner", "-h", db.get("HOST") or "127.0.0.1",
                   "-p", str(db.get("PORT") or 5432), "-d", db["NAME"]]
        if db.get("USER"):
            command += ["-U", db["USER"]]
        return subprocess.run(command, env=env, check=True, capture_output=True, text=True, timeout=120).stdout
    return "\n".join(connection.connection.iterdump())


def files_text(root: Path) -> dict[str, str]:
    return {str(path): path.read_bytes().decode("utf-8", "replace") for path in Path(root).rglob("*") if path.is_file()}


def cache_text() -> str:
    """Every key and value in the cache, as text (Redis, or the file cache)."""
    backend = cache._cache if hasattr(cache, "_cache") else None
    if backend is not None and hasattr(backend, "get_client"):
        client = backend.get_client()
        prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
        parts = []
        for key in client.scan_iter(match=f"{prefix}*"):
            parts.append(key.decode("utf-8", "replace"))
            value = client.get(key)
            parts.append((value or b"").decode("latin-1"))
        return "\n".join(parts)
    location = Path(settings.CACHES["default"].get("LOCATION", ""))
    return "\n".join(files_text(location).values()) if location.is_dir() else ""


def survey_through_the_pages(client, study):
    """A Prolific participant who types a distinctive phrase and crisis language, and finishes."""
    participant, _ = start(client, study, f"?PROLIFIC_PID={PROLIFIC_ID}&STUDY_ID=st&SESSION_ID=se-1")
    through_consent_and_eligibility(client, participant)
    # A page with an error first: Django logs "Bad Request: <path with the token>".
    assert post(client, participant, "background", {"background.ethnicity": "other"}).status_code == 400
    data = background_post(**{"background.ethnicity": "other", "background.gender": "self_describe"})
    data["background.ethnicity-text"] = PHRASE
    data["background.gender-text"] = CRISIS_PHRASE
    assert post(client, participant, "background", data)["Location"].endswith("?support=1")
    from_attitudes_to_the_scenarios(client, participant)
    participant.refresh_from_db()
    for number, entry in enumerate(participant.scenario_plan, start=1):
        post(client, participant, f"scenario/{number}", ranking_post(entry["responses"]))
    assert post(client, participant, "closing", {"feedback": f"Thanks from {PHRASE}."})["Location"].endswith("/done/")
    client.get(url(participant, "nope"))  # a 404 under their link: logged too
    participant.refresh_from_db()
    assert participant.status == Participant.Status.COMPLETED
    return participant


def test_after_withdrawal_nothing_anywhere_links_back(client, researcher, caplog, settings, tmp_path):
    from core.services import helplines_seed, vocabulary_seed

    vocabulary_seed()
    helplines_seed()
    caplog.set_level(logging.DEBUG)
    # Its own artifacts folder: the scan must see this person's files, not other tests'.
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    artifacts = Path(settings.ARTIFACT_ROOT)
    study = study_with_responses()
    stays = [complete_participant(study) for _ in range(2)]
    leaves = survey_through_the_pages(client, study)
    identifiers = {"pseudonym": leaves.pseudonym, "token": leaves.token, "withdrawal code": leaves.withdrawal_code,
                   "Prolific id": PROLIFIC_ID, "phrase": PHRASE, "crisis text": CRISIS_PHRASE}

    # A researcher's work with their data: exports, personas (edited), weights, the dashboard, the flag.
    services.survey_answers_export(study=study, actor=researcher, include_free_text=True)
    services.criteria_rankings_export(study=study, actor=researcher)
    services.response_rankings_export(study=study, actor=researcher)
    services.personas_build(study=study, actor=researcher)
    services.persona_update(persona=leaves.persona, text=f"A persona that mentions {PHRASE}.", actor=researcher)
    services.personas_select(study=study, total=3, train=2, test=1, min_quality=0)
    services.personas_export_dataset(path=artifacts / "experiments" / "demo" / "scenarios" / "personas.jsonl", study=study)
    services.weight_vector_create(study=study, name="all", n_boot=10, actor=researcher)
    client.force_login(researcher)
    assert client.get(f"/study/manage/{study.slug}/").status_code == 200  # caches the report
    flag = leaves.crisis_flags.get()
    client.post(f"/study/manage/flags/{flag.pk}/review/")
    client.logout()

    # The checks can fail: before the withdrawal the dump and the files hold them.
    before = database_dump()
    assert leaves.pseudonym in before and leaves.token in before and PHRASE in before
    assert any(PHRASE in text for text in files_text(artifacts).values())
    assert any(leaves.token in record.getMessage() for record in caplog.records) is False  # redacted from the start
    assert any("/study/r/<participant>/" in record.getMessage() for record in caplog.records)
    subject_key = Participant.objects.get(pk=leaves.pk).audit_subject.key
    assert AuditEvent.objects.filter(subject_key=subject_key).count() >= 3  # flag, persona edit, flag review

    response = client.post("/study/withdraw/", {"code": leaves.withdrawal_code, "confirm": "yes"})
    assert response.status_code == 200 and "You have withdrawn" in response.content.decode()

    dump = database_dump()
    for name, value in identifiers.items():
        assert value not in dump, f"the database still holds their {name}"
    for path, text in files_text(artifacts).items():
        for name, value in identifiers.items():
            assert value not in text, f"{path} still holds their {name}"
    cached = cache_text()
    for name, value in identifiers.items():
        assert value not in cached, f"the cache still holds their {name}"
    for record in caplog.records:
        message = record.getMessage()
        for name, value in identifiers.items():
            assert value not in message, f"a log line from {record.name} holds their {name}: {message}"

    # What stays: the marked versions with their hashes, the audit rows under a key that leads nowhere,
    # the Prolific exclusion hash, and the other participants.
    versions = DatasetVersion.objects.filter(study=study)
    assert versions.count() == 5 and all(v.affected_by_withdrawal_at and v.files_deleted_at and v.sha256 for v in versions)
    assert not AuditSubject.objects.filter(key=subject_key).exists()
    assert AuditEvent.objects.filter(subject_key=subject_key, action="survey.participant_withdraw").exists()
    assert ProlificExclusion.objects.filter(study=study).count() == 1
    assert set(Participant.objects.filter(study=study)) == set(stays)
    assert selectors.study_funnel(study)["withdrawn"] == 1
    assert not re.search(r"survey-" + re.escape(leaves.pseudonym), dump)
    client.force_login(researcher)
    dashboard = client.get(f"/study/manage/{study.slug}/").content.decode()
    assert dashboard.count("files deleted") == 5 and leaves.pseudonym not in dashboard
