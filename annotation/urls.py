"""Mounted at /rate/ (config.urls). Clinician URLs carry opaque tokens only."""
from django.urls import path

from . import api, views

app_name = "annotation"
urlpatterns = [
    path("", views.queue, name="queue"),
    path("item/<str:token>/", views.item, name="item"),
    path("study/<str:study_token>/next/", views.next_item, name="next"),
    path("study/<str:study_token>/undo/", views.undo, name="undo"),
    path("api/queue/", api.QueueApi.as_view(), name="api-queue"),
    path("api/items/<str:token>/", api.ItemApi.as_view(), name="api-item"),
    path("api/items/<str:token>/draft/", api.DraftApi.as_view(), name="api-draft"),
    path("api/items/<str:token>/judgment/", api.JudgmentApi.as_view(), name="api-judgment"),
    path("api/studies/<str:token>/undo/", api.UndoApi.as_view(), name="api-undo"),
    path("api/research/studies/<int:pk>/results/", api.ResultsApi.as_view(), name="api-results"),
    path("api/research/studies/<int:pk>/judge-decisions/", api.JudgeImportApi.as_view(), name="api-judge-import"),
]
