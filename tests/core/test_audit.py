"""Audit rows land in the same transaction as the action, and never change."""
import pytest
from django.db import connection, transaction

from core.audit import AuditAction, audit_record
from core.models import AuditEvent, Helpline


def test_audit_row_commits_and_rolls_back_with_the_action(db, researcher):
    with transaction.atomic():
        helpline = Helpline.objects.create(region="Testland", name="Line")
        audit_record(actor=researcher, action=AuditAction.SCENARIOS_IMPORT, target=helpline, details={"region": "Testland"})
    event = AuditEvent.objects.get(action=AuditAction.SCENARIOS_IMPORT)
    assert event.actor == researcher and event.actor_label == researcher.username
    assert event.target_type == "core.helpline" and event.target_id == str(helpline.pk)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with transaction.atomic():
            other = Helpline.objects.create(region="Testland", name="Second")
            audit_record(actor=researcher, action=AuditAction.SCENARIOS_IMPORT, target=other)
            raise Boom
    assert AuditEvent.objects.filter(action=AuditAction.SCENARIOS_IMPORT).count() == 1
    assert not Helpline.objects.filter(name="Second").exists()


def test_audit_record_refuses_to_run_outside_a_transaction(transactional_db):
    with pytest.raises(RuntimeError, match="inside the action's transaction"):
        audit_record(action="x.y")
    assert AuditEvent.objects.count() == 0


def test_audit_record_refuses_an_action_name_outside_the_enumeration(db):
    with transaction.atomic():
        with pytest.raises(ValueError):
            audit_record(action="survey.study_chnage")
        audit_record(action="survey.study_change")  # a member's value is the same name
    assert list(AuditEvent.objects.values_list("action", flat=True)) == [AuditAction.SURVEY_STUDY_CHANGE]


def test_audit_log_is_append_only(db):
    with transaction.atomic():
        event = audit_record(action=AuditAction.SURVEY_STUDY_CHANGE, details={"a": 1})
    event.details = {"a": 2}
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(action="other")
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get(pk=event.pk).details == {"a": 1}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the database trigger exists on PostgreSQL")
def test_database_refuses_raw_updates(db):
    from django.db import DatabaseError

    with transaction.atomic():
        event = audit_record(action=AuditAction.SURVEY_STUDY_CHANGE)
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE core_auditevent SET action = 'forged' WHERE id = %s", [event.pk])
    assert AuditEvent.objects.get(pk=event.pk).action == AuditAction.SURVEY_STUDY_CHANGE


def test_audit_log_is_read_only_in_admin(client, researcher):
    from django.contrib.auth.models import Permission

    researcher.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    with transaction.atomic():
        event = audit_record(actor=researcher, action=AuditAction.SURVEY_STUDY_CHANGE)
    client.force_login(researcher)
    assert client.get("/admin/core/auditevent/").status_code == 200
    page = client.get(f"/admin/core/auditevent/{event.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert client.get("/admin/core/auditevent/add/").status_code == 403
    assert client.post(f"/admin/core/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403


def test_rows_about_a_person_carry_a_subject_key_that_erasing_unlinks(db):
    from core.models import AuditSubject
    from core.audit import audit_subject_create, audit_subject_erase

    with transaction.atomic():
        subject = audit_subject_create()
        first = audit_record(action="survey.crisis_flag", target_type="survey.crisisflag", subject=subject, details={"item": "x"})
        audit_record(action="survey.persona_edit", target_type="survey.persona", subject=subject)
    assert first.subject_key == subject.key and len(subject.key) == 32 and first.target_id == ""
    assert AuditEvent.objects.filter(subject_key=subject.key).count() == 2
    with transaction.atomic():
        audit_subject_erase(subject=subject)
    # The rows stay as written (append-only); their key now leads nowhere.
    assert not AuditSubject.objects.filter(key=subject.key).exists()
    assert AuditEvent.objects.filter(subject_key=subject.key).count() == 2
    assert audit_subject_create().key != subject.key
