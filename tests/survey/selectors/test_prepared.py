"""Lookups compiled once (survey.selectors.prepared) give what the ORM gives: the same fields
converted the same way, the study with them, the deferred fields on demand, None for no row;
a subquery compiled once counts what the ORM counts."""
import pytest
from django.db import transaction
from django.db.models import Count, IntegerField
from django.db.models.expressions import RawSQL

from survey import selectors, services
from survey.models import Answer, Participant
from survey.selectors.prepared import INTEGER, PreparedLookup, PreparedSubquery
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


def test_the_study_of_a_link_by_its_slug_in_one_query(study, django_assert_num_queries):
    with django_assert_num_queries(1):
        found = selectors.study_for_entry(study.slug)
    assert (found.pk, found.title, found.is_active) == (study.pk, study.title, study.is_active)
    with django_assert_num_queries(1):
        assert selectors.study_for_entry("no-such-study") is None
    with django_assert_num_queries(0):  # longer than any slug: not looked up
        assert selectors.study_for_entry("x" * 65) is None and selectors.study_for_entry("") is None


def test_a_prepared_subquery_counts_what_the_orm_counts(study):
    answered, fresh = complete_participant(study), services.participant_start(study=study)
    answers = PreparedSubquery(lambda participant_id: Answer.objects.filter(participant_id=participant_id).order_by()
                               .values("participant").annotate(n=Count("pk")).values("n"), kinds=(INTEGER,))
    for participant in (answered, fresh, answered):  # the second call of the same subquery reuses its SQL
        sql, params = answers.sql(participant.pk)
        counted = Participant.objects.filter(pk=participant.pk).annotate(
            n=RawSQL(f"COALESCE(({sql}), 0)", params, output_field=IntegerField())).values_list("n", flat=True).get()
        assert counted == Answer.objects.filter(participant=participant).count()
    assert Answer.objects.filter(participant=answered).count() > 0


def test_an_integer_value_needs_the_integer_marker():
    answers = PreparedSubquery(lambda participant_id: Answer.objects.filter(participant_id=participant_id).values("pk"))
    with pytest.raises((ValueError, TypeError)):
        answers.sql(1)  # the text marker is not an integer
