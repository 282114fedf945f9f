from django.urls import path

from . import views

app_name = "campaigns"
urlpatterns = [
    path("campaigns/", views.campaign_list, name="list"),
    path("campaigns/<int:pk>/", views.campaign_detail, name="detail"),
    path("stages/<int:pk>/", views.stage_detail, name="stage"),
]
