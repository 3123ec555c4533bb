import time

from django.conf import settings
from django.contrib.auth import logout

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
