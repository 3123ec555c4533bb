"""The two account roles. Participants have no account: an opaque token
identifies them (see survey)."""
from django.contrib.auth.models import Group, Permission

CLINICIANS = "Clinicians"
RESEARCHERS = "Researchers"
# Researchers manage everything in the study apps; clinicians only rate.
RESEARCHER_APPS = ("core", "survey", "annotation", "training")


def ensure_groups():
    researchers, _ = Group.objects.get_or_create(name=RESEARCHERS)
    Group.objects.get_or_create(name=CLINICIANS)
    permissions = Permission.objects.filter(content_type__app_label__in=RESEARCHER_APPS)
    # The audit log is read-only for everyone.
    permissions = permissions.exclude(content_type__model="auditevent", codename__in=["add_auditevent", "change_auditevent", "delete_auditevent"])
    researchers.permissions.set(permissions)
    return researchers


def on_post_migrate(sender, **kwargs):
    # Each app's permissions appear after its own post_migrate; refresh every time.
    ensure_groups()
    if sender.name == "core":
        from .services import helplines_seed, vocabulary_seed

        vocabulary_seed()
        helplines_seed()


def is_clinician(user) -> bool:
    return user.is_authenticated and user.groups.filter(name=CLINICIANS).exists()


def is_researcher(user) -> bool:
    return user.is_authenticated and user.is_staff and (user.is_superuser or user.groups.filter(name=RESEARCHERS).exists())


def has_research_access(user) -> bool:
    """Staff, superusers and members of the Researchers group: people who can
    reach sources, results or exports, and so must never rate."""
    return user.is_authenticated and (
        user.is_staff or user.is_superuser or user.groups.filter(name=RESEARCHERS).exists()
    )


# Apps that hold rating studies register how to tell whether someone rates in
# one (core must not import them); the core admin hides sources from raters.
_rater_checks = []


def register_rater_check(check) -> None:
    if check not in _rater_checks:
        _rater_checks.append(check)


def rates_in_any_study(user) -> bool:
    return user.is_authenticated and any(check(user) for check in _rater_checks)
