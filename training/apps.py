from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Training and evaluation"

    def ready(self):
        from survey.signals import dataset_versions_withdrawn

        from .withdrawal import on_dataset_versions_withdrawn

        dataset_versions_withdrawn.connect(on_dataset_versions_withdrawn, dispatch_uid="training.withdrawal")
