from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="poms/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("pick/", views.pick_context, name="pick"),
    path("account/tokens/", views.api_tokens, name="api_tokens"),
    path("admin/", admin.site.urls),
    path("", include("campaigns.urls")),
    path("", include("submissions.urls")),
    path("", include("launches.urls")),
    path("catalog/api/", include("sam_adapter.urls")),
]

handler403 = "poms.errors.forbidden"
