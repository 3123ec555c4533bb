"""One error shape (core.errors), rendered in one place for pages, the API and the admin."""
import pytest
from django.contrib.messages import ERROR
from django.test import RequestFactory
from django.urls import resolve

from annotation.exceptions import InvalidInput, NotAssigned
from core.error_handlers import admin_error, api_exception_handler, error_page
from core.errors import ApplicationError, NotFound
from core.input import BadInput
from survey.exceptions import InvalidAnswer, SurveyError


def test_every_apps_errors_are_application_errors_with_one_shape():
    answer = InvalidAnswer({"ranking": "Rank every response.", "": "Reload the page."})
    assert isinstance(answer, ApplicationError) and answer.status_code == 400
    assert answer.field_errors == {"ranking": "Rank every response.", "": "Reload the page."}
    assert answer.message == str(answer) == "Rank every response. Reload the page."
    assert answer.errors == ["Rank every response.", "Reload the page."]
    imported = InvalidInput("cannot import", errors=["line 2: bad"])
    assert (imported.message, imported.errors, imported.field_errors) == ("cannot import", ["line 2: bad"], {})
    assert NotAssigned("not yours").status_code == 403 and SurveyError("closed").status_code == 409
    assert BadInput("control character").errors == ["control character"] and NotFound("gone").status_code == 404


def test_the_api_handler_answers_with_the_errors_status_and_body():
    response = api_exception_handler(NotAssigned("this item is not in your queue"), {})
    assert response.status_code == 403
    assert response.data == {"detail": "this item is not in your queue", "errors": ["this item is not in your queue"]}
    assert api_exception_handler(ValueError("not ours"), {}) is None  # DRF's own handling for the rest


@pytest.mark.django_db
def test_a_page_error_uses_its_apps_error_template():
    request = RequestFactory().get("/study/some-study/")
    request.resolver_match = resolve("/study/some-study/")
    response = error_page(request, SurveyError("This study is not taking new participants at the moment."))
    assert response.status_code == 409
    assert b"Sorry, we could not do that" in response.content and b"not taking new participants" in response.content


def test_the_admin_helper_shows_the_message_as_an_error():
    shown = []

    class ModelAdmin:
        def message_user(self, request, message, level):
            shown.append((message, level))

    admin_error(ModelAdmin(), None, InvalidInput("overlap must be between 1 and 3"), prefix="Study 1: ")
    assert shown == [("Study 1: overlap must be between 1 and 3", ERROR)]
