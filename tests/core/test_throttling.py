"""API throttles count with one atomic increment, so requests sent together cannot slip past the limit."""
import threading
import time
import uuid

from django.test import RequestFactory
from rest_framework import throttling
from rest_framework.request import Request

from core.throttling import AnonRateThrottle


def throttle_class(base, rate):
    # A fresh scope each run: counters of an earlier run in the same minute must not count.
    return type("Throttle", (base,), {"rate": rate, "scope": f"test-{uuid.uuid4().hex}"})


def hammer(throttle, threads=8, each=20):
    request = Request(RequestFactory().get("/rate/api/queue/", REMOTE_ADDR="198.51.100.7"))
    allowed, lock, start = [], threading.Lock(), threading.Barrier(threads)

    def client():
        start.wait()
        for _ in range(each):
            ok = throttle().allow_request(request, None)
            with lock:
                allowed.append(ok)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return len(allowed), sum(allowed)


def test_concurrent_requests_never_pass_the_limit():
    if time.time() % 60 > 50:  # a fixed window: do not straddle a minute boundary
        time.sleep(61 - time.time() % 60)
    sent, allowed = hammer(throttle_class(AnonRateThrottle, "50/min"))
    _, drf_allowed = hammer(throttle_class(throttling.AnonRateThrottle, "50/min"))
    print(f"\n{sent} requests from 8 threads at once under 50/min: {allowed} allowed "
          f"(DRF's read-modify-write throttle: {drf_allowed})")
    assert sent == 160 and allowed == 50


def test_a_refused_request_is_told_when_to_come_back():
    request = Request(RequestFactory().get("/rate/api/queue/", REMOTE_ADDR="198.51.100.8"))
    two_per_minute = throttle_class(AnonRateThrottle, "2/min")
    assert [two_per_minute().allow_request(request, None) for _ in range(2)] == [True, True]
    refused = two_per_minute()
    assert refused.allow_request(request, None) is False
    assert 0 < refused.wait() <= 60
