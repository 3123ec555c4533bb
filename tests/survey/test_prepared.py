"""Statements compiled once (survey.prepared). Reads give what the ORM gives: the same fields
converted the same way, the study with them, the deferred fields on demand, None for no row; a
subquery compiled once counts what the ORM counts. Writes send what bulk_create and update send
and leave the same rows: inserted, then updated in place on their unique key, ids set on the
instances."""
import datetime

import pytest
from django.db import connection, transaction
from django.db.models import Count, IntegerField, Value
from django.db.models.expressions import RawSQL
from django.utils import timezone

from survey import selectors, services
from survey.models import Answer, ImportanceRating, Participant, Persona, ResponseRanking
from survey.prepared import (
    INTEGER,
    TEXT,
    PreparedInsert,
    PreparedLookup,
    PreparedRows,
    PreparedSubquery,
    PreparedUpdate,
    PreparedUpsert,
)
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


def test_rows_and_lookups_of_several_values_give_what_the_orm_gives(study):
    participant = complete_participant(study)
    saved = PreparedRows(lambda participant_id, position: ResponseRanking.objects.filter(
        participant_id=participant_id, position=position).order_by().values_list("ranking", "skipped"), kinds=(INTEGER, INTEGER))
    for position in range(3):
        expected = list(ResponseRanking.objects.filter(participant=participant, position=position).values_list("ranking", "skipped"))
        assert saved.rows(participant.pk, position) == expected and expected  # JSON lists converted as the ORM does
    answers = PreparedLookup(lambda participant_id, after: Answer.objects.filter(
        participant_id=participant_id, item_key__gt=after).order_by("item_key"), kinds=(INTEGER, TEXT), limit=None)
    found = answers.all(participant.pk, "background.")
    expected = list(Answer.objects.filter(participant=participant, item_key__gt="background.").order_by("item_key")
                    .values_list("item_key", "value"))
    assert [(a.item_key, a.value) for a in found] == expected and len(expected) > 1
    assert answers.all(participant.pk, "zzz") == []
    with pytest.raises(TypeError):
        answers.all(participant.pk)  # two values, not one
    with pytest.raises(TypeError):
        answers.first(participant.pk, "attitude.")  # a lookup of several rows has no first()

ANSWERS = PreparedUpsert(Answer, unique_fields=["participant", "item_key"], update_fields=["value", "text", "shown_order", "updated_at"])


def _answers(participant, values):
    return [Answer(participant=participant, item_key=f"attitude.{key}", value=value, text=f"t{value}")
            for key, value in values.items()]


def _comparable(params):
    """The parameters with the timestamps (the time of each call) left out, JSON values as their text."""
    def one(value):
        if isinstance(value, datetime.datetime):
            return "<a time>"
        if isinstance(value, list):
            return [one(v) for v in value]
        return getattr(value, "obj", value)  # psycopg's Jsonb wrapper: the value inside

    return [one(v) for v in params]


def _statements_sent(call) -> list[tuple[str, list]]:
    sent = []

    def record(execute, sql, params, many, context):
        sent.append((sql, list(params or ())))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        call()
    return sent


@pytest.mark.parametrize("count", [1, 3])
def test_the_statement_and_parameters_are_the_ones_bulk_create_sends(study, count):
    participant = services.participant_start(study=study)
    values = dict(list({"trust": 1, "comfort": 2, "privacy": 3}.items())[:count])
    [(orm_sql, orm_params)] = _statements_sent(lambda: Answer.objects.bulk_create(
        _answers(participant, values), update_conflicts=True,
        unique_fields=["participant", "item_key"], update_fields=["value", "text", "shown_order", "updated_at"]))
    [(sql, params)] = _statements_sent(lambda: ANSWERS.save(_answers(participant, values)))
    assert sql == orm_sql and "ON CONFLICT" in sql and "RETURNING" in sql
    assert _comparable(params) == _comparable(orm_params)
    assert len(params) == 7  # one value a column, or (several rows) one array a column


def test_rows_are_inserted_then_updated_in_place_with_their_ids(study):
    participant = services.participant_start(study=study)
    first = ANSWERS.save(_answers(participant, {"trust": 1, "comfort": 2}))
    assert all(row.pk and not row._state.adding for row in first)
    saved = {a.item_key: (a.pk, a.value, a.text) for a in Answer.objects.filter(participant=participant)}
    assert saved == {"attitude.trust": (first[0].pk, 1, "t1"), "attitude.comfort": (first[1].pk, 2, "t2")}
    again = ANSWERS.save(_answers(participant, {"trust": 5, "comfort": 4}))  # the same statement, compiled already
    assert [row.pk for row in again] == [row.pk for row in first]
    saved = {a.item_key: (a.pk, a.value, a.text) for a in Answer.objects.filter(participant=participant)}
    assert saved == {"attitude.trust": (first[0].pk, 5, "t5"), "attitude.comfort": (first[1].pk, 4, "t4")}
    assert Answer.objects.filter(participant=participant).count() == 2


def test_timestamps_are_set_as_the_orm_sets_them(study):
    participant = services.participant_start(study=study)
    [row] = ANSWERS.save(_answers(participant, {"trust": 3}))
    stored = Answer.objects.get(pk=row.pk)
    assert stored.updated_at is not None and stored.answered_at is not None
    [again] = ANSWERS.save(_answers(participant, {"trust": 4}))
    assert Answer.objects.get(pk=row.pk).updated_at > stored.updated_at
    assert Answer.objects.get(pk=row.pk).answered_at == stored.answered_at  # the first answer's time is kept


def test_a_value_that_is_an_expression_goes_the_orms_way(study):
    participant = services.participant_start(study=study)
    criterion = selectors.study_criteria()[0]
    ratings = PreparedUpsert(ImportanceRating, unique_fields=["participant", "criterion"], update_fields=["rating"])
    ratings.save([ImportanceRating(participant=participant, criterion_id=criterion.pk, rating=2)])
    row = ImportanceRating(participant=participant, criterion_id=criterion.pk, rating=Value(4))
    assert ratings.statement([row]) is None  # its SQL depends on the expression
    ratings.save([row])
    assert ImportanceRating.objects.get(participant=participant, criterion=criterion).rating == 4


def test_an_update_sets_plain_json_and_raw_sql_values_as_the_orm_does(study):
    participant, other = services.participant_start(study=study), services.participant_start(study=study)
    update = PreparedUpdate(Participant)
    plan = [{"scenario": 1, "responses": [3, 4], "criterion": "empathy"}]
    now = timezone.now()
    for steps_done in (2, 3):  # the second time, the statement compiled already
        changed = update.update(participant.pk, steps_done=steps_done, scenario_plan=plan, eligible_at=now,
                                attention_failures=RawSQL("%s + %s", (1, steps_done), output_field=IntegerField()))
        assert changed == 1
        row = Participant.objects.get(pk=participant.pk)
        assert (row.steps_done, row.scenario_plan, row.eligible_at, row.attention_failures) == (steps_done, plan, now, 1 + steps_done)
    untouched = Participant.objects.get(pk=other.pk)
    assert (untouched.steps_done, untouched.scenario_plan, untouched.attention_failures) == (other.steps_done, None, 0)
    assert update.update(-1, steps_done=1) == 0  # no such row


def test_an_insert_sends_what_bulk_create_sends_and_sets_the_id(study):
    first, second = services.participant_start(study=study), services.participant_start(study=study)
    insert = PreparedInsert(Persona)
    [(orm_sql, orm_params)] = _statements_sent(lambda: Persona.objects.bulk_create(
        [Persona(participant=first, text="A person.", weights={"empathy": 1.0})]))
    persona = Persona(participant=second, text="A person.", weights={"empathy": 1.0})
    [(sql, params)] = _statements_sent(lambda: insert.save([persona]))
    assert sql == orm_sql and "ON CONFLICT" not in sql
    assert _comparable(params)[1:] == _comparable(orm_params)[1:]  # all but the participant
    assert persona.pk and Persona.objects.get(pk=persona.pk).participant_id == second.pk
