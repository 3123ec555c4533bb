"""Signals other apps listen to, so the survey never imports them."""
from django.dispatch import Signal

# Sent inside a withdrawal's transaction, before the participant's rows are deleted:
# version_ids (every DatasetVersion that contained them), at (the time of the withdrawal),
# texts (the participant's pseudonymous identifiers, for receivers that scrub derived files;
# never store them). Training marks every job and model built from the versions.
dataset_versions_withdrawn = Signal()
