from django.urls import path

from . import api, split_views, views

app_name = "launches"
urlpatterns = [
    path("stages/<int:pk>/launch/", views.launch, name="launch"),
    path("stages/<int:pk>/dry-run/", views.dry_run, name="dry_run"),
    path("campaigns/<int:pk>/launch/", views.launch_campaign, name="launch_campaign"),
    path("campaigns/<int:pk>/stage-holds/", views.stage_holds, name="stage_holds"),
    path("control/<str:scope>/<int:pk>/<str:action>/", views.scope_action, name="control"),
    path("submissions/<int:pk>/relaunch/", views.relaunch, name="relaunch"),
    path("submissions/<int:pk>/approval/<str:decision>/", views.approval, name="approval"),
    path("launches/held/", views.held_launches, name="held"),
    path("launches/held/<int:pk>/delete/", views.delete_held_launch, name="delete_held"),
    path("launches/switch/<str:mode>/", views.switch_launches, name="switch"),
    path("submissions/<int:pk>/abort/", views.abort_launch, name="abort"),
    path("submissions/<int:pk>/kick/<str:target>/", views.kick, name="kick"),
    path("submissions/<int:pk>/recover/", views.launch_recovery, name="recover"),
    path("jobs/<int:pk>/<str:stream>/", views.job_output, name="job_output"),
    path("api/update_submission", api.update_submission, name="api_update_submission"),
    path("api/get_submission_id_for", api.get_submission_id_for, name="api_get_submission_id_for"),
    *split_views.urlpatterns,
]
