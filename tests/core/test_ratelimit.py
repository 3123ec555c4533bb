"""core.ratelimit and the withdrawal-by-code form: failures are limited per
code and, with a higher ceiling, per address; a shared address does not lock
the form for everyone."""
import secrets

import pytest

from core.ratelimit import FailureLimit
from survey import views as survey_views
from survey.models import Participant
from tests.survey.factories import complete_participant, study_with_responses

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _vocabulary(db, settings, tmp_path):
    from core.services import helplines_seed, vocabulary_seed

    vocabulary_seed()
    helplines_seed()
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"


def fresh_address() -> str:
    """Counters live in the cache for an hour: each test uses addresses no other run has used."""
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


def unknown_code() -> str:
    alphabet = "ABCDEFGHJKMNPQRSTVWXYZ"
    return "".join(secrets.choice(alphabet) for _ in range(5)) + "-" + "".join(secrets.choice(alphabet) for _ in range(5))


def test_failure_limit_counts_per_value():
    limit = FailureLimit(f"test-{secrets.token_hex(4)}", limit=2)
    assert not limit.exceeded("a")
    limit.record_failure("a")
    limit.record_failure("a")
    assert limit.exceeded("a") and not limit.exceeded("b")


def test_the_cache_never_holds_the_code(settings):
    from django.core.cache import cache

    code = unknown_code()
    key = survey_views.WITHDRAWAL_FAILURES_PER_CODE._key(code)
    assert code not in key and code.replace("-", "") not in key
    assert cache.get(key) is None


@pytest.fixture
def study():
    return study_with_responses()


def withdraw(client, code, address, confirm="yes"):
    return client.post("/study/withdraw/", {"code": code, "confirm": confirm}, REMOTE_ADDR=address)


def test_a_shared_address_can_still_withdraw_after_others_mistype(client, study):
    """Many people behind one address mistyping is below the address ceiling; the old limit (20 attempts
    of any kind per address) locked everyone out."""
    address = fresh_address()
    for _ in range(30):
        assert withdraw(client, unknown_code(), address).status_code == 400
    participant = complete_participant(study)
    response = withdraw(client, participant.withdrawal_code, address)
    assert response.status_code == 200
    assert not Participant.objects.filter(pk=participant.pk).exists()  # withdrawal deletes the participant


def test_the_address_ceiling_stops_guessing(client, study):
    address = fresh_address()
    for _ in range(survey_views.WITHDRAWAL_FAILURES_PER_ADDRESS.limit):
        withdraw(client, unknown_code(), address)
    participant = complete_participant(study)
    response = withdraw(client, participant.withdrawal_code, address)
    assert response.status_code == 429 and b"from this connection" in response.content
    participant.refresh_from_db()
    assert participant.status == Participant.Status.COMPLETED
    # Someone else, elsewhere, is not affected.
    assert withdraw(client, participant.withdrawal_code, fresh_address()).status_code == 200


def test_one_code_is_limited_whatever_the_address(client, study):
    participant = complete_participant(study)
    code = participant.withdrawal_code
    for _ in range(survey_views.WITHDRAWAL_FAILURES_PER_CODE.limit):
        assert withdraw(client, code, fresh_address(), confirm="").status_code == 400
    response = withdraw(client, code.lower().replace("-", ""), fresh_address())
    assert response.status_code == 429 and b"This code has been tried too many times" in response.content
    participant.refresh_from_db()
    assert participant.status == Participant.Status.COMPLETED
    # Other codes from the same addresses still work.
    other = complete_participant(study)
    assert withdraw(client, other.withdrawal_code, fresh_address()).status_code == 200
