import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from core import roles
from core.audit import AuditAction, audit_record
from core.services import helplines_seed, scenario_bank_load, vocabulary_seed

DEMO_RESEARCHER = "researcher"
DEMO_CLINICIANS = ("clinician1", "clinician2", "clinician3")


class Command(BaseCommand):
    help = "Load the demo study: criteria, scenario bank, a survey and demo accounts. Safe to run again."

    def handle(self, *args, **options):
        vocabulary_seed()
        helplines_seed()
        roles.ensure_groups()
        report = scenario_bank_load()
        self.stdout.write(f"Scenario bank: {report.summary()}")
        created = self._ensure_accounts()
        # Accounts first: the annotation demo assigns the demo clinicians.
        self._load_app_demos()
        if created:
            self.stdout.write(self.style.WARNING("Demo accounts (passwords are shown this once; keep them):"))
            for username, password in created:
                self.stdout.write(f"  {username:<12} {password}")
        else:
            self.stdout.write("Demo accounts already exist; reset a password with `manage.py changepassword <user>`.")

    def _load_app_demos(self):
        # Each app that has demo content provides demo.load(stdout) -> None.
        from importlib import import_module

        for app in ("survey", "annotation", "training"):
            try:
                module = import_module(f"{app}.demo")
            except ModuleNotFoundError:
                continue
            module.load(self.stdout)

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
