import time

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.middleware import CheckableLazyObject
from csp.middleware import CSPMiddleware as LibraryCSPMiddleware
from csp.utils import build_policy
from django.conf import settings
from django.contrib.auth import logout
from django.core.signals import setting_changed

SESSION_STARTED_KEY = "_attune_session_started"


class AbsoluteSessionLifetimeMiddleware:
    """Ends a logged-in session a fixed time after login, however active it is
    (SESSION_COOKIE_AGE alone only expires idle sessions)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        session = request.session
        started = session.get(SESSION_STARTED_KEY)
        now = time.time()
        if started is None:
            if session.get("_auth_user_id"):
                session[SESSION_STARTED_KEY] = now
        elif now - started > settings.SESSION_ABSOLUTE_LIFETIME:
            logout(request)
        response = self.get_response(request)
        if request.session.get("_auth_user_id") and SESSION_STARTED_KEY not in request.session:
            request.session[SESSION_STARTED_KEY] = now
        return response


# What the library's decorators and nonce leave on a response or request: a policy of its own.
_PER_RESPONSE_POLICY = ("_csp_config", "_csp_update", "_csp_replace", "_csp_config_ro", "_csp_update_ro", "_csp_replace_ro",
                        "_csp_exempt", "_csp_exempt_ro")


class CSPMiddleware(LibraryCSPMiddleware):
    """django-csp's middleware with the site's policy built once per process instead of on every
    response (building it was a few percent of a participant page's CPU, bench/README.md). A
    response with a policy of its own (the library's decorators), a nonce, or an exclusion by
    path goes the library's way, so the headers are always the library's."""

    # (headers, whether a policy excludes paths), from the settings; None until first needed.
    _site: tuple[dict[str, str], bool] | None = None

    @classmethod
    def site_policy(cls) -> tuple[dict[str, str], bool]:
        if cls._site is None:
            headers = {HEADER: build_policy(), HEADER_REPORT_ONLY: build_policy(report_only=True)}
            excludes = any((getattr(settings, name, None) or {}).get("EXCLUDE_URL_PREFIXES")
                           for name in ("CONTENT_SECURITY_POLICY", "CONTENT_SECURITY_POLICY_REPORT_ONLY"))
            cls._site = ({name: value for name, value in headers.items() if value}, excludes)
        return cls._site

    def process_response(self, request, response):
        headers, excludes = self.site_policy()
        own_policy = getattr(request, "_csp_nonce", None) is not None or any(hasattr(response, a) for a in _PER_RESPONSE_POLICY)
        if own_policy or excludes or (settings.DEBUG and response.status_code in (404, 500)):
            return super().process_response(request, response)
        for name, value in headers.items():
            if name not in response:
                response[name] = value
        # As the library does: a nonce asked for after the header is written is an error, not a silent gap.
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)
        return response


def _policy_changed(*, setting, **kwargs):
    if setting.startswith("CONTENT_SECURITY_POLICY"):
        CSPMiddleware._site = None


setting_changed.connect(_policy_changed, dispatch_uid="core.middleware.csp")
