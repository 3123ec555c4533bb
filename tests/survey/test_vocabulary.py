"""The criteria cached per process (survey.selectors.vocabulary): no query when warm, dropped when
a criterion is saved or deleted, never filled inside the transaction that wrote one (so a rollback
leaves nothing wrong behind), and followed across processes through the shared version key."""
import pytest
from django.core.cache import cache
from django.db import transaction

from core.models import Criterion
from survey import selectors
from survey.selectors import vocabulary

pytestmark = pytest.mark.django_db


def names():
    return [c.name for c in selectors.study_criteria()]


def test_warm_criteria_cost_no_query(django_assert_num_queries):
    first = selectors.study_criteria()
    selectors.criterion_by_key(first[0].key)
    with django_assert_num_queries(0):
        again = selectors.study_criteria()
        assert selectors.criterion_by_key(first[-1].key) == first[-1]
    assert [c.pk for c in again] == [c.pk for c in first]
    assert [c.key for c in again] == list(Criterion.objects.filter(is_therapeutic=True).order_by("position", "key")
                                          .values_list("key", flat=True))
    with pytest.raises(Criterion.DoesNotExist):
        selectors.criterion_by_key("no-such-criterion")


def test_a_saved_or_deleted_criterion_is_seen_at_once_and_read_from_the_database_in_its_transaction(django_assert_num_queries):
    names()
    criterion = Criterion.objects.filter(is_therapeutic=True).order_by("position").first()
    criterion.name = "Warmth (renamed)"
    criterion.save()
    # This test's transaction wrote a criterion: until it ends, every read goes to the database.
    with django_assert_num_queries(1):
        assert "Warmth (renamed)" in names()
    with django_assert_num_queries(1):
        assert selectors.criterion_by_key(criterion.key).name == "Warmth (renamed)"
    extra = Criterion.objects.create(key="zz_extra", name="Extra", question="?", better_when="", worse_when="",
                                     is_therapeutic=True, position=99)
    assert selectors.study_criteria()[-1].key == "zz_extra"
    extra.delete()
    assert "zz_extra" not in [c.key for c in selectors.study_criteria()]


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_is_never_cached_and_a_committed_one_is(django_assert_num_queries):
    before = names()
    criterion = Criterion.objects.filter(is_therapeutic=True).order_by("position").first()
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            criterion.name = "Never committed"
            criterion.save()
            assert "Never committed" in names()
            raise RuntimeError("roll back")
    assert names() == before  # the rolled-back name was not cached
    with django_assert_num_queries(0):
        assert names() == before
    with transaction.atomic():
        criterion.name = "Committed name"
        criterion.save()
    assert "Committed name" in names()
    with django_assert_num_queries(0):
        assert "Committed name" in names()


def test_another_processs_change_is_followed_through_the_shared_version(settings, django_assert_num_queries):
    names()
    settings.VOCABULARY_RECHECK_SECONDS = 3600
    vocabulary._state["checked"] = float("-inf")
    names()  # checks the shared version now, then not for an hour
    cache.set(vocabulary.VERSION_KEY, "changed by another process", timeout=None)
    with django_assert_num_queries(0):
        names()  # within the recheck interval: the copy here is still used
    settings.VOCABULARY_RECHECK_SECONDS = 0
    with django_assert_num_queries(1):
        names()  # the version changed: read again
    with django_assert_num_queries(0):
        names()
