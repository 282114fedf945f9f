"""The catalogue's job API, mounted under catalog/api/ by the project's root URLs."""

from django.urls import path

from . import api

app_name = "catalog"
urlpatterns = [
    path("<str:experiment>/projects/start", api.start_project, name="start_project"),
    path("<str:experiment>/projects/<str:name>/next", api.next_file, name="next_file"),
    path("<str:experiment>/projects/<str:name>/status", api.file_status, name="file_status"),
    path("<str:experiment>/projects/<str:name>/done", api.end_process, name="end_process"),
    path("<str:experiment>/files/declare", api.declare, name="declare"),
    path("<str:experiment>/datasets/<str:name>/files", api.dataset_files, name="dataset_files"),
    path("<str:experiment>/datasets/<str:name>/count", api.dataset_count, name="dataset_count"),
]
