from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Shared vocabulary and audit"

    def ready(self):
        from django.db.models.signals import post_migrate

        from . import roles

        # Permissions exist only after every app has migrated.
        post_migrate.connect(roles.on_post_migrate, dispatch_uid="core.roles")
