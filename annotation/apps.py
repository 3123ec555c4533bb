from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = "Clinician rating studies"

    def ready(self):
        from core import roles

        from .selectors import user_rates_in_any_study

        roles.register_rater_check(user_rates_in_any_study)
