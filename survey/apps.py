from django.apps import AppConfig


class SurveyConfig(AppConfig):
    name = "survey"
    verbose_name = "Lived-experience survey"

    def ready(self):
        from . import log_redaction
        from .selectors import vocabulary

        log_redaction.install()
        vocabulary.connect()  # the cached criteria are dropped when a criterion is saved or deleted
