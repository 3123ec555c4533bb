from django.urls import path

from . import researcher_views, views

app_name = "survey"
urlpatterns = [
    # Researchers (staff only).
    path("manage/", researcher_views.study_list, name="manage"),
    path("manage/datasets/<int:pk>/files/<int:index>/", researcher_views.dataset_download, name="dataset-download"),
    path("manage/flags/<int:pk>/review/", researcher_views.crisis_flag_review, name="flag-review"),
    path("manage/<slug:slug>/", researcher_views.dashboard, name="dashboard"),
    path("manage/<slug:slug>/plots/<slug:name>.svg", researcher_views.plot, name="plot"),
    path("manage/<slug:slug>/export/", researcher_views.export, name="export"),
    path("manage/<slug:slug>/weights/", researcher_views.weight_vector_create, name="weights"),
    path("manage/<slug:slug>/personas/", researcher_views.personas, name="personas"),
    # Participants: everything after the entry page is addressed by the participant's token.
    path("withdraw/", views.withdraw_by_code, name="withdraw-code"),
    path("withdraw/done/", views.withdrawn, name="withdrawn"),
    path("ended/<str:note>/", views.screened_out, name="screened-out"),
    path("r/<str:token>/", views.resume, name="resume"),
    path("r/<str:token>/progress.json", views.progress_api, name="progress-api"),
    path("r/<str:token>/consent/", views.consent, name="consent"),
    path("r/<str:token>/consent/copy/", views.consent_copy, name="consent-copy"),
    path("r/<str:token>/eligibility/", views.eligibility, name="eligibility"),
    path("r/<str:token>/background/", views.background, name="background"),
    path("r/<str:token>/attitudes/", views.attitudes, name="attitudes"),
    path("r/<str:token>/importance/", views.importance, name="importance"),
    path("r/<str:token>/criteria-ranking/", views.criteria_ranking, name="criteria-ranking"),
    path("r/<str:token>/before-scenarios/", views.before_scenarios, name="before-scenarios"),
    path("r/<str:token>/scenario/<int:number>/", views.scenario, name="scenario"),
    path("r/<str:token>/closing/", views.closing, name="closing"),
    path("r/<str:token>/done/", views.done, name="done"),
    path("r/<str:token>/ended/", views.ended, name="ended"),
    path("r/<str:token>/withdraw/", views.withdraw, name="withdraw"),
    path("<slug:slug>/", views.entry, name="entry"),
]
