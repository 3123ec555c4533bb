"""API rate limits counted with one atomic increment per request.

DRF's own throttles read the request history from the cache, append, and write it back: requests
that arrive together read the same history and all pass (620 requests sent 4 at a time were all
allowed under 600/minute). Here each request is one ``cache.incr`` on a counter for the current
fixed window (Redis INCR: atomic across processes and threads), so at most ``num_requests`` pass
per window. A fixed window can let up to twice the rate through across a window boundary; that is
the price of a single atomic operation, and fine for a limit meant to blunt abuse (django-axes, not
this, protects sign-in)."""
from __future__ import annotations

from rest_framework import throttling

from .ratelimit import counter_increment


class AtomicWindowMixin:
    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        window = int(self.now // self.duration)
        counter = f"{self.key}:w{window}"
        count = counter_increment(self.cache, counter, timeout=self.duration * 2)
        self.window_ends = (window + 1) * self.duration
        return count <= self.num_requests

    def wait(self):
        """Seconds until the window ends (the Retry-After header)."""
        return max(0.0, self.window_ends - self.now)


class AnonRateThrottle(AtomicWindowMixin, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(AtomicWindowMixin, throttling.UserRateThrottle):
    pass
