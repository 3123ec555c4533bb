"""core.network: the client address behind trusted proxies only, and a sign-in
lockout per username and, across usernames, per address (password spraying)."""
import pytest
from django.test import RequestFactory

from core.network import client_ip
from tests.factories import ClinicianFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
PROXY = "172.18.0.5"


def request_from(remote, forwarded=None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


def test_forwarded_for_is_ignored_without_a_trusted_proxy(settings):
    settings.ATTUNE_TRUSTED_PROXY_COUNT = 0
    assert client_ip(request_from("203.0.113.9", "198.51.100.1")) == "203.0.113.9"


def test_behind_trusted_proxies_the_client_is_counted_from_the_right(settings):
    settings.ATTUNE_TRUSTED_PROXY_COUNT = 1
    assert client_ip(request_from(PROXY, "198.51.100.1")) == "198.51.100.1"
    # A client cannot choose its address by sending its own X-Forwarded-For: the proxy appends the real one.
    assert client_ip(request_from(PROXY, "10.9.9.9, 198.51.100.1")) == "198.51.100.1"
    settings.ATTUNE_TRUSTED_PROXY_COUNT = 2
    assert client_ip(request_from(PROXY, "10.9.9.9, 198.51.100.1, 192.0.2.7")) == "198.51.100.1"
    # Fewer hops than proxies, or garbage: the socket address.
    assert client_ip(request_from(PROXY, "198.51.100.1")) == PROXY
    settings.ATTUNE_TRUSTED_PROXY_COUNT = 1
    assert client_ip(request_from(PROXY, "not-an-address")) == PROXY
    assert client_ip(request_from(PROXY)) == PROXY


def login(client, username, password="wrong", **extra):
    return client.post("/accounts/login/", {"username": username, "password": password}, **extra)


def spray(client, settings, **extra):
    """Fail once for each of ATTUNE_LOGIN_ADDRESS_FAILURE_LIMIT different usernames: the last one locks."""
    limit = settings.ATTUNE_LOGIN_ADDRESS_FAILURE_LIMIT
    for n in range(limit):
        response = login(client, f"nobody-{n}", **extra)
        assert response.status_code == (429 if n == limit - 1 else 200), n


def test_spraying_many_usernames_from_one_address_locks_the_address(client, settings):
    assert settings.ATTUNE_LOGIN_ADDRESS_FAILURE_LIMIT > settings.AXES_FAILURE_LIMIT
    clinician = ClinicianFactory()
    spray(client, settings, REMOTE_ADDR="198.51.100.20")
    locked = login(client, clinician.username, PASSWORD, REMOTE_ADDR="198.51.100.20")
    assert locked.status_code == 429 and b"Too many sign-in attempts" in locked.content
    # Another address is not affected.
    assert login(client, clinician.username, PASSWORD, REMOTE_ADDR="198.51.100.21").status_code == 302


def test_a_few_failures_from_a_shared_address_do_not_lock_it(client, settings):
    clinician = ClinicianFactory()
    for n in range(settings.ATTUNE_LOGIN_ADDRESS_FAILURE_LIMIT - 1):
        login(client, f"typo-{n}", REMOTE_ADDR="198.51.100.30")
    assert login(client, clinician.username, PASSWORD, REMOTE_ADDR="198.51.100.30").status_code == 302


def test_one_username_is_still_locked_after_repeated_failures(client, settings):
    clinician = ClinicianFactory()
    for n in range(settings.AXES_FAILURE_LIMIT):
        login(client, clinician.username, REMOTE_ADDR=f"198.51.100.{40 + n}")
    assert login(client, clinician.username, PASSWORD, REMOTE_ADDR="198.51.100.99").status_code == 429


def test_behind_a_trusted_proxy_each_real_client_is_counted(client, settings):
    settings.ATTUNE_TRUSTED_PROXY_COUNT = 1
    clinician = ClinicianFactory()
    spray(client, settings, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="198.51.100.50")
    assert login(client, clinician.username, PASSWORD, REMOTE_ADDR=PROXY,
                 HTTP_X_FORWARDED_FOR="198.51.100.50").status_code == 429
    # Another person behind the same proxy signs in.
    assert login(client, clinician.username, PASSWORD, REMOTE_ADDR=PROXY,
                 HTTP_X_FORWARDED_FOR="198.51.100.51").status_code == 302


def test_without_a_trusted_proxy_forwarded_for_cannot_dodge_the_lock(client, settings):
    settings.ATTUNE_TRUSTED_PROXY_COUNT = 0
    clinician = ClinicianFactory()
    for n in range(settings.ATTUNE_LOGIN_ADDRESS_FAILURE_LIMIT):
        # A different made-up X-Forwarded-For each time: still one address.
        login(client, f"nobody-{n}", REMOTE_ADDR="198.51.100.60", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
    assert login(client, clinician.username, PASSWORD, REMOTE_ADDR="198.51.100.60",
                 HTTP_X_FORWARDED_FOR="10.0.0.200").status_code == 429


def test_a_successful_sign_in_does_not_reset_the_address_count(client, settings):
    """An attacker with one valid account cannot clear the address count between rounds of spraying."""
    own = ClinicianFactory()
    address = "198.51.100.70"
    limit = settings.ATTUNE_LOGIN_ADDRESS_FAILURE_LIMIT
    for n in range(limit - 1):
        assert login(client, f"nobody-{n}", REMOTE_ADDR=address).status_code == 200
    assert login(client, own.username, PASSWORD, REMOTE_ADDR=address).status_code == 302
    client.logout()
    assert login(client, "nobody-last", REMOTE_ADDR=address).status_code == 429


def test_a_successful_sign_in_clears_the_users_own_typos(client, settings):
    own = ClinicianFactory()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login(client, own.username, REMOTE_ADDR="198.51.100.80")
    assert login(client, own.username, PASSWORD, REMOTE_ADDR="198.51.100.80").status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, own.username, REMOTE_ADDR="198.51.100.80").status_code == 200
