from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from core import views as core_views

admin.site.site_header = "Attune research admin"
admin.site.site_title = "Attune"
admin.site.index_title = "Studies, data and training"

urlpatterns = [
    path("", core_views.home, name="home"),
    path("support/", core_views.support, name="support"),
    path("healthz", core_views.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/continue/", core_views.post_login, name="post-login"),
    path("study/", include("survey.urls")),
    path("rate/", include("annotation.urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
]

handler400 = "core.views.bad_request"
handler404 = "core.views.not_found"
