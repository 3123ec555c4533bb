"""Prolific ids are kept only as keyed hashes.

A Prolific id names a person on Prolific, so the survey never stores it:
the participant row holds HMAC-SHA256 of the id (and of the submission's
session id), keyed per study with ``settings.PROLIFIC_ID_HASH_KEY`` or, when
that is unset, a key derived from ``SECRET_KEY``. The same id always gives
the same hash within a study, which is all that resuming and refusing
re-entry need; without the key the hash cannot be tested against a list of
ids. Changing the key (or SECRET_KEY, when no dedicated key is set) forgets
every exclusion."""
from __future__ import annotations

from django.conf import settings
from django.utils.crypto import salted_hmac


def _keyed_hash(purpose: str, study_id: int, value: str) -> str:
    secret = getattr(settings, "PROLIFIC_ID_HASH_KEY", "") or None  # None: Django's SECRET_KEY
    return salted_hmac(f"attune.survey.prolific.{purpose}.study-{study_id}", value, secret=secret,
                       algorithm="sha256").hexdigest()


def prolific_id_hash(*, study_id: int, prolific_id: str) -> str:
    return _keyed_hash("pid", study_id, prolific_id) if prolific_id else ""


def prolific_session_hash(*, study_id: int, session_id: str) -> str:
    return _keyed_hash("session", study_id, session_id) if session_id else ""
