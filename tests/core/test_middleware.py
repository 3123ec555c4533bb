"""core.middleware.CSPMiddleware: the site's policy built once gives the headers django-csp's
own middleware gives; a response with its own policy, a nonce or a changed setting still gets
the library's."""
import pytest
from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.middleware import CSPMiddleware as LibraryCSPMiddleware
from django.http import HttpResponse
from django.test import RequestFactory, override_settings

from core.middleware import CSPMiddleware


def _headers(middleware_class, *, prepare=None, path="/study/demo/"):
    request = RequestFactory().get(path)
    middleware = middleware_class(lambda request: HttpResponse("ok"))
    middleware.process_request(request)
    response = HttpResponse("ok")
    if prepare:
        prepare(request, response)
    middleware.process_response(request, response)
    return {name: response.get(name) for name in (HEADER, HEADER_REPORT_ONLY)}


def test_the_site_policy_is_the_librarys():
    ours, theirs = _headers(CSPMiddleware), _headers(LibraryCSPMiddleware)
    assert ours == theirs and "default-src 'self'" in ours[HEADER] and ours[HEADER_REPORT_ONLY] is None
    assert _headers(CSPMiddleware) == theirs  # built once, the same the second time


@pytest.mark.parametrize("prepare, differs", [
    (lambda request, response: setattr(response, "_csp_update", {"img-src": ["https://example.org"]}), True),
    (lambda request, response: setattr(response, "_csp_exempt", True), True),
    # The site's policy asks for no nonce (no directive names csp.constants.NONCE): the same header.
    (lambda request, response: str(request.csp_nonce), False),
], ids=["a view's own policy", "exempt", "a nonce"])
def test_a_response_with_a_policy_of_its_own_gets_the_librarys_headers(prepare, differs):
    assert _headers(CSPMiddleware, prepare=prepare) == _headers(LibraryCSPMiddleware, prepare=prepare)
    assert (_headers(CSPMiddleware, prepare=prepare) != _headers(CSPMiddleware)) is differs


def test_a_policy_with_a_nonce_gets_the_requests_nonce():
    from csp.constants import NONCE, SELF

    with override_settings(CONTENT_SECURITY_POLICY={"DIRECTIVES": {"script-src": [SELF, NONCE]}}):
        header = _headers(CSPMiddleware, prepare=lambda request, response: setattr(request, "seen", str(request.csp_nonce)))[HEADER]
        assert "script-src 'self' 'nonce-" in header and header != _headers(CSPMiddleware)[HEADER]


def test_a_changed_policy_setting_is_used_at_once():
    before = _headers(CSPMiddleware)
    policy = {"DIRECTIVES": {"default-src": ["'none'"]}}
    with override_settings(CONTENT_SECURITY_POLICY=policy, CONTENT_SECURITY_POLICY_REPORT_ONLY=policy):
        changed = _headers(CSPMiddleware)
        assert changed == _headers(LibraryCSPMiddleware)
        assert changed[HEADER] == "default-src 'none'" and changed[HEADER_REPORT_ONLY] == "default-src 'none'"
    assert _headers(CSPMiddleware) == before


def test_excluded_paths_go_the_librarys_way():
    policy = {"EXCLUDE_URL_PREFIXES": ["/healthz"], "DIRECTIVES": {"default-src": ["'self'"]}}
    with override_settings(CONTENT_SECURITY_POLICY=policy):
        assert _headers(CSPMiddleware, path="/healthz")[HEADER] is None
        assert _headers(CSPMiddleware)[HEADER] == "default-src 'self'"


def test_a_nonce_asked_for_after_the_header_is_written_is_an_error():
    from csp.exceptions import CSPNonceError

    request = RequestFactory().get("/")
    middleware = CSPMiddleware(lambda request: HttpResponse("ok"))
    middleware.process_request(request)
    middleware.process_response(request, HttpResponse("ok"))
    with pytest.raises(CSPNonceError):
        str(request.csp_nonce)
