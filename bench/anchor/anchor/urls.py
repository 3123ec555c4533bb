from django.urls import path

from . import views

urlpatterns = [
    path("study/r/<str:token>/", views.resume),
    path("study/r/<str:token>/scenario/<int:number>/", views.page, {"step": "scenario"}),
    path("study/r/<str:token>/done/", views.done),
    path("study/r/<str:token>/<slug:step>/", views.page),
    path("study/<slug:slug>/", views.entry),
    path("healthz", views.healthz),
]
