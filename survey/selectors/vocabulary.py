"""The criteria participants rate and rank, cached in each process: they change rarely (the
vocabulary seed, a researcher in the admin), and every importance, ranking and scenario
request needs them, so a participant's request does not query them.

Invalidation: a save or delete of a criterion (the receivers below, connected in
SurveyConfig.ready) drops this process's copy at once and again when its transaction
commits, and changes a version key in the shared cache; other processes compare that key
at most every ``VOCABULARY_RECHECK_SECONDS`` (a setting, 10 by default), so they follow a
change within that time. Inside a transaction that changed a criterion the copy is
bypassed, not filled: a rollback would undo what it held. Bulk writes that send no
signals (QuerySet.update, bulk_create) must call ``vocabulary_changed()`` themselves."""
from __future__ import annotations

import secrets
import threading
import time

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction

from core.models import Criterion

VERSION_KEY = "survey:vocabulary-version"
_UNSET = object()
_lock = threading.Lock()
_entries: dict[str, object] = {}
_state = {"generation": 0, "version": _UNSET, "checked": float("-inf")}


def _recheck_seconds() -> float:
    return float(getattr(settings, "VOCABULARY_RECHECK_SECONDS", 10))


def _forget_local():
    with _lock:
        _state["generation"] += 1
        _entries.clear()


def _bump_shared():
    try:
        cache.set(VERSION_KEY, secrets.token_hex(8), timeout=None)
    except Exception:  # noqa: BLE001 - the cache being down must not fail a save; other processes recheck
        pass


def vocabulary_changed(**_kwargs):
    """A criterion was written: forget the cached criteria here and tell the other processes."""
    _forget_local()
    _bump_shared()
    if connection.in_atomic_block:
        # Until this transaction ends, this connection reads rows other processes cannot see yet.
        connection.survey_vocabulary_written_in = connection.atomic_blocks[0]
        transaction.on_commit(vocabulary_changed_committed)


def vocabulary_changed_committed():
    # Readers in other threads or processes may have cached the old rows meanwhile.
    _forget_local()
    _bump_shared()


def _bypass() -> bool:
    """True inside a transaction that wrote a criterion (read the database, cache nothing)."""
    written_in = getattr(connection, "survey_vocabulary_written_in", None)
    if written_in is None:
        return False
    if connection.atomic_blocks and connection.atomic_blocks[0] is written_in:
        return True
    connection.survey_vocabulary_written_in = None  # that transaction is over (committed or rolled back)
    _forget_local()
    return False


def _recheck():
    now = time.monotonic()
    if now - _state["checked"] < _recheck_seconds():
        return
    _state["checked"] = now
    try:
        version = cache.get(VERSION_KEY)
    except Exception:  # noqa: BLE001 - no shared cache: trust nothing cached
        version = object()
    if version != _state["version"]:
        _state["version"] = version
        _forget_local()


def _cached(key: str, load):
    if _bypass():
        return load()
    _recheck()
    try:
        return _entries[key]
    except KeyError:
        pass
    generation = _state["generation"]
    value = load()
    with _lock:
        if _state["generation"] == generation:  # not invalidated while loading
            _entries[key] = value
    return value


def _therapeutic() -> tuple[Criterion, ...]:
    return tuple(Criterion.objects.filter(is_therapeutic=True).order_by("position", "key"))


def _by_key() -> dict[str, Criterion]:
    return {c.key: c for c in Criterion.objects.all()}


def study_criteria() -> list[Criterion]:
    """The criteria participants rate and rank: the therapeutic ones, in order. The objects
    are shared by the process's requests: read them, do not change them."""
    return list(_cached("therapeutic", _therapeutic))


def criterion_by_key(key: str) -> Criterion:
    """Any criterion by its key (a fixed scenario plan may name one no longer therapeutic)."""
    criterion = _cached("by_key", _by_key).get(key)
    if criterion is None:
        return Criterion.objects.get(key=key)  # raises DoesNotExist as before
    return criterion


def connect():
    from django.db.models.signals import post_delete, post_save

    post_save.connect(vocabulary_changed, sender=Criterion, dispatch_uid="survey.vocabulary.save")
    post_delete.connect(vocabulary_changed, sender=Criterion, dispatch_uid="survey.vocabulary.delete")
