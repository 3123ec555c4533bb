from django.apps import AppConfig


class SurveyConfig(AppConfig):
    name = "survey"
    verbose_name = "Lived-experience survey"

    def ready(self):
        from . import log_redaction

        log_redaction.install()
