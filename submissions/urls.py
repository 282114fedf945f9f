from django.urls import path

from . import views

app_name = "submissions"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("stages/<int:pk>/submissions/", views.stage_submissions, name="stage_table"),
    path("campaigns/<int:pk>/status.json", views.campaign_status, name="campaign_status"),
    path("submissions/<int:pk>/", views.submission_detail, name="detail"),
    path("submissions/<int:pk>/live/", views.submission_live, name="live"),
    path("submissions/<int:pk>/log/", views.launch_log, name="log"),
    path("submissions/<int:pk>/files/", views.submission_files, name="files"),
    path("submissions/<int:pk>/files/<str:label>/", views.submission_file_list, name="file_list"),
]
