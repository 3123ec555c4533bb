"""Who is asking: the client's address, taken correctly behind trusted reverse
proxies, and the sign-in lockout that counts failures per username and per
address.

`ATTUNE_TRUSTED_PROXY_COUNT` (settings, from the environment) is the number of
reverse proxies in front of Django that each append the address they saw to
X-Forwarded-For (the compose `proxy` service is one). With 0 — the default —
X-Forwarded-For is ignored entirely: anyone can send that header, so trusting
it without a proxy would let a client pick its own address. With N, the client
is the N-th address from the right: the entries to its right were written by
our proxies, anything to its left by the client and cannot be trusted.
"""
from __future__ import annotations

import ipaddress

from axes.handlers.database import AxesDatabaseHandler
from django.conf import settings
from django.db.models import Sum


def _valid_address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def client_ip(request) -> str | None:
    """The client's address (also django-axes' AXES_CLIENT_IP_CALLABLE); None
    for a request without one (Django's test client's force_login)."""
    remote = request.META.get("REMOTE_ADDR") or None
    proxies = getattr(settings, "ATTUNE_TRUSTED_PROXY_COUNT", 0)
    if proxies <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < proxies:
        # Fewer hops than proxies: the request did not come through all of them.
        return remote
    return _valid_address(forwarded[-proxies]) or remote


class LoginLockoutHandler(AxesDatabaseHandler):
    """django-axes' database handler with a second, higher limit per address.

    AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"] makes axes count
    failures per username and, separately, per address (across every username
    tried from it). Axes compares the larger of the two counts with one
    AXES_FAILURE_LIMIT; an address shared by a clinic or a university needs a
    higher ceiling, so its count is scaled: floor(n * L / M) >= L exactly when
    n >= M, where L is AXES_FAILURE_LIMIT and M is ATTUNE_LOGIN_ADDRESS_FAILURE_LIMIT.
    """

    def get_failures(self, request, credentials=None) -> int:
        username_limit = settings.AXES_FAILURE_LIMIT
        address_limit = max(settings.ATTUNE_LOGIN_ADDRESS_FAILURE_LIMIT, 1)
        counts = []
        for parameter, attempts in zip(settings.AXES_LOCKOUT_PARAMETERS, self.get_user_attempts(request, credentials)):
            failures = attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0
            counts.append(failures * username_limit // address_limit if parameter == "ip_address" else failures)
        return max(counts, default=0)

    def reset_user_attempts(self, request, credentials=None) -> int:
        """On a successful sign-in, clear only that username's failures. Axes would
        also clear every failure from the address, so an attacker with one valid
        account could reset the address count between rounds of spraying."""
        from axes.helpers import get_client_username
        from axes.models import AccessAttempt

        username = get_client_username(request, credentials)
        if not username:
            return 0
        count, _ = AccessAttempt.objects.filter(username=username).delete()
        return count
