"""The sign-in page (clinicians and researchers) says what went wrong."""
import pytest

pytestmark = pytest.mark.django_db

URL = "/accounts/login/"


def test_empty_fields_are_named(client):
    response = client.post(URL, {"username": "", "password": ""})
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="id_username_error"' in page and 'id="id_password_error"' in page
    assert page.count("This field is required.") == 2
    assert 'aria-invalid="true"' in page and "Please correct the fields marked below." in page
    assert "_auth_user_id" not in client.session


def test_only_the_missing_field_is_marked(client, clinician):
    page = client.post(URL, {"username": clinician.username, "password": ""}).content.decode()
    assert 'id="id_password_error"' in page and 'id="id_username_error"' not in page
    assert f'value="{clinician.username}"' in page


def test_wrong_password_shows_the_non_field_error(client, clinician):
    page = client.post(URL, {"username": clinician.username, "password": "wrong"}).content.decode()
    assert "Please enter a correct username and password" in page
    assert 'role="alert"' in page and f'value="{clinician.username}"' in page


def test_locked_out_page_says_so(client, clinician, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = client.post(URL, {"username": clinician.username, "password": "wrong"})
    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many sign-in attempts" in page and "try again in an hour" in page
