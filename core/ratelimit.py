"""Counting failures in the cache (Redis in production and tests) over a
fixed window, per key. Keys are keyed hashes: the cache never holds a code,
an address or anything else a person sent."""
from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.core.cache import cache


def counter_increment(cache_backend, key: str, *, timeout: float) -> int:
    """Add one to a counter that lives ``timeout`` seconds, atomically (Redis INCR), and return it."""
    cache_backend.add(key, 0, timeout=timeout)
    try:
        return cache_backend.incr(key)
    except ValueError:  # expired between add and incr
        cache_backend.set(key, 1, timeout=timeout)
        return 1


class FailureLimit:
    """At most ``limit`` failures per ``window_seconds`` for each value of one kind (e.g. "address")."""

    def __init__(self, name: str, *, limit: int, window_seconds: int = 60 * 60):
        self.name = name
        self.limit = limit
        self.window_seconds = window_seconds

    def _key(self, value: str) -> str:
        digest = hmac.new(settings.SECRET_KEY.encode(), f"{self.name}:{value}".encode(), hashlib.sha256).hexdigest()
        return f"ratelimit:{self.name}:{digest[:32]}"

    def exceeded(self, value: str) -> bool:
        return (cache.get(self._key(value)) or 0) >= self.limit

    def record_failure(self, value: str) -> int:
        return counter_increment(cache, self._key(value), timeout=self.window_seconds)
