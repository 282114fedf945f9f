from django.urls import path

from . import views

app_name = "launches"
urlpatterns = [
    path("stages/<int:pk>/launch/", views.launch, name="launch"),
    path("stages/<int:pk>/dry-run/", views.dry_run, name="dry_run"),
    path("submissions/<int:pk>/<str:action>/", views.submission_action, name="action"),
]
