import io
import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from core import roles
from core.audit import AuditAction, audit_record
from core.services import helplines_seed, scenario_bank_load, vocabulary_seed

DEMO_RESEARCHER = "researcher"
DEMO_CLINICIANS = ("clinician1", "clinician2", "clinician3")


def demo_passwords_path() -> Path:
    return Path(settings.VAR_DIR) / "demo-passwords.txt"


def demo_passwords_save(created: list[tuple[str, str]]) -> Path:
    """Keep the generated passwords where the person who ran the demo can find them
    again: a file only they can read (0600), never in the database or the log."""
    path = demo_passwords_path()
    known = dict(line.split(None, 1) for line in path.read_text().splitlines() if line.strip()) if path.exists() else {}
    known.update(created)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.writelines(f"{username} {password}\n" for username, password in known.items())
    os.chmod(path, 0o600)  # also when the file was already there with other rights
    return path


class Command(BaseCommand):
    help = ("Load the demo study: criteria, scenario bank, a survey with a synthetic cohort and demo accounts. "
            "Safe to run again. -v 0 prints only the new passwords, where they are kept, and problems.")

    def handle(self, *args, **options):
        verbose = options["verbosity"] >= 1
        detail = self.stdout if verbose else io.StringIO()
        vocabulary_seed()
        helplines_seed()
        roles.ensure_groups()
        report = scenario_bank_load()
        detail.write(f"Scenario bank: {report.summary()}")
        created = self._ensure_accounts()
        # Accounts first: the annotation demo assigns the demo clinicians.
        self._load_app_demos(detail)
        if created:
            path = demo_passwords_save(created)
            self.stdout.write(self.style.WARNING("Demo accounts (new passwords):"))
            for username, password in created:
                self.stdout.write(f"  {username:<12} {password}")
            self.stdout.write(f"Demo passwords are kept in {path} (readable only by you).")
        elif demo_passwords_path().exists():
            detail.write(f"Demo accounts already exist; their passwords are in {demo_passwords_path()}.")
        else:
            detail.write("Demo accounts already exist; reset a password with `manage.py changepassword <user>`.")

    def _load_app_demos(self, stdout):
        # Each app that has demo content provides demo.load(stdout) -> None.
        from importlib import import_module

        for app in ("survey", "annotation", "training"):
            try:
                module = import_module(f"{app}.demo")
            except ModuleNotFoundError:
                continue
            module.load(stdout)

    @transaction.atomic
    def _ensure_accounts(self):
        user_model = get_user_model()
        researchers = Group.objects.get(name=roles.RESEARCHERS)
        clinicians = Group.objects.get(name=roles.CLINICIANS)
        created = []
        for username, group, staff in [(DEMO_RESEARCHER, researchers, True)] + [(c, clinicians, False) for c in DEMO_CLINICIANS]:
            if user_model.objects.filter(username=username).exists():
                continue
            password = secrets.token_urlsafe(12)
            user = user_model.objects.create_user(username=username, password=password, is_staff=staff)
            user.groups.add(group)
            audit_record(action=AuditAction.ACCOUNTS_CREATE_DEMO, target=user, details={"group": group.name})
            created.append((username, password))
        return created
