from django.contrib import admin

from . import models


@admin.register(models.CatalogFile)
class CatalogFileAdmin(admin.ModelAdmin):
    list_display = ("name", "experiment", "version", "run_number", "location", "declared_by_submission", "created")
    list_filter = ("experiment",)
    search_fields = ("name",)


@admin.register(models.Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "experiment", "dataset", "status", "submission_id", "created")


for model in (models.Parentage, models.NamedDataset, models.Snapshot, models.ProjectFile):
    admin.site.register(model)
