"""Who can open what: clinicians rate, researchers administer, throttled logins."""
import pytest
from django.contrib.auth.models import Group

from core import roles


def test_groups_exist_with_researcher_permissions(db):
    researchers = Group.objects.get(name=roles.RESEARCHERS)
    codenames = set(researchers.permissions.values_list("codename", flat=True))
    assert {"add_scenario", "change_scenario", "view_auditevent", "change_helpline"} <= codenames
    assert not {"add_auditevent", "change_auditevent", "delete_auditevent"} & codenames
    assert Group.objects.get(name=roles.CLINICIANS).permissions.count() == 0


def test_clinician_cannot_open_the_admin(client, clinician):
    client.force_login(clinician)
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert client.get("/admin/core/scenario/").status_code == 302


def test_researcher_opens_the_admin(client, researcher):
    client.force_login(researcher)
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/core/scenario/").status_code == 200
    assert client.get("/admin/core/helpline/").status_code == 200


def test_login_sends_each_role_to_its_place(client, clinician, researcher):
    client.force_login(clinician)
    assert client.get("/accounts/continue/")["Location"] == "/rate/"
    client.logout()
    client.force_login(researcher)
    assert client.get("/accounts/continue/")["Location"] == "/admin/"


def test_researchers_cannot_rate(client, researcher):
    client.force_login(researcher)
    assert client.get("/rate/").status_code == 403


def test_repeated_failed_logins_lock_the_account(client, clinician, settings):
    url = "/accounts/login/"
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = client.post(url, {"username": clinician.username, "password": "wrong"})
        assert response.status_code == 200
    locked = client.post(url, {"username": clinician.username, "password": "wrong"})
    assert locked.status_code == 429
    assert b"Too many sign-in attempts" in locked.content
    # Even the right password is refused while locked.
    right = client.post(url, {"username": clinician.username, "password": "correct horse battery staple"})
    assert right.status_code == 429
    assert "_auth_user_id" not in client.session


def test_correct_login_works(client, clinician):
    response = client.post("/accounts/login/", {"username": clinician.username, "password": "correct horse battery staple"})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(clinician.pk)


def test_absolute_session_lifetime(client, clinician, settings):
    from core.middleware import SESSION_STARTED_KEY

    client.force_login(clinician)
    assert client.get("/rate/").status_code == 200
    session = client.session
    session[SESSION_STARTED_KEY] -= settings.SESSION_ABSOLUTE_LIFETIME + 1
    session.save()
    response = client.get("/rate/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("path", ["/", "/support/"])
def test_public_pages_carry_the_support_link(client, db, path):
    response = client.get(path)
    assert response.status_code == 200
    assert b"Need support now?" in response.content
    assert b'href="/support/"' in response.content


def test_support_page_lists_helplines_by_region(client, db):
    from core.models import Helpline

    Helpline.objects.create(region="Testland", name="Test Listening Line", phone="0800 000")
    body = client.get("/support/").content.decode()
    assert "Testland" in body and "Test Listening Line" in body and 'href="tel:0800000"' in body
    assert "Samaritans" in body  # seeded default


def test_security_headers(client, db):
    response = client.get("/")
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in response["Content-Security-Policy"]


def test_research_access_covers_staff_superusers_and_the_researchers_group(db, clinician, researcher):
    from tests.factories import UserFactory

    assert roles.has_research_access(researcher)
    assert not roles.has_research_access(clinician)
    assert roles.has_research_access(UserFactory(is_superuser=True))
    assert roles.has_research_access(UserFactory(is_staff=True))
    member = UserFactory()
    member.groups.add(Group.objects.get_or_create(name=roles.RESEARCHERS)[0])
    assert roles.has_research_access(member)


def test_raters_are_recognised_through_the_registered_check(db):
    from tests.annotation.factories import make_study

    study = make_study(n_items=1, n_clinicians=1, overlap=1)
    rater = study.memberships.get().clinician
    assert roles.rates_in_any_study(rater)
    assert not roles.rates_in_any_study(study.created_by)
