import secrets

from django.db import models


def new_token() -> str:
    return secrets.token_urlsafe(24)


class Participant(models.Model):
    token = models.CharField(max_length=64, unique=True, default=new_token)
    created_at = models.DateTimeField(auto_now_add=True)


class Answer(models.Model):
    """One upserted row per page."""

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE)
    page = models.CharField(max_length=32)
    data = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["participant", "page"], name="anchor_answer_once")]
