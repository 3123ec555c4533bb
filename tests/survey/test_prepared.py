"""Lookups compiled once (survey.selectors.prepared) give what the ORM gives: the same fields
converted the same way, the study with them, the deferred fields on demand, None for no row."""
import pytest
from django.db import transaction

from survey import selectors, services
from survey.models import Participant
from survey.selectors.prepared import PreparedLookup
from tests.survey.factories import complete_participant

pytestmark = pytest.mark.django_db


def test_a_prepared_lookup_returns_what_the_queryset_returns(study, django_assert_num_queries):
    participant = complete_participant(study, prolific={"PROLIFIC_PID": "pid-1", "STUDY_ID": "st", "SESSION_ID": "se"})
    expected = Participant.objects.select_related("study").get(pk=participant.pk)
    with django_assert_num_queries(1):
        found = selectors.participant_by_token(participant.token)
        assert found.study.slug == study.slug  # loaded with it
    loaded = {f.attname for f in Participant._meta.concrete_fields} - set(selectors.PAGE_DEFERRED)
    for name in loaded:
        assert getattr(found, name) == getattr(expected, name), name
    assert isinstance(found.scenario_plan, list) and found.scenario_plan == expected.scenario_plan
    assert found.get_deferred_fields() == set(selectors.PAGE_DEFERRED)
    assert found.completed_at == expected.completed_at  # a deferred field, loaded on demand
    assert found._state.adding is False and found._state.db == "default"
    assert selectors.participant_by_token("no-such-token") is None


def test_the_posts_lookup_locks_and_marks_the_row_for_the_services_in_its_transaction(study):
    participant = services.participant_start(study=study)
    with transaction.atomic():
        locked = services.participant_lock_by_token(participant.token)
        assert locked.pk == participant.pk and locked.study == study
        assert services.answers.participant_locked_here(locked)
        assert services.answers.participant_lock_row(locked) is locked  # no second lock query
    assert not services.answers.participant_locked_here(locked)  # that transaction is over
    with transaction.atomic():
        assert services.participant_lock_by_token("no-such-token") is None


def test_the_value_must_appear_once_in_the_query():
    lookup = PreparedLookup(lambda token: Participant.objects.filter(token=token, pseudonym=token))
    with pytest.raises(ValueError):
        lookup.first("x")
