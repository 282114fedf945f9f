from django.contrib import admin

from . import models


class RecoveryInline(admin.TabularInline):
    model = models.JobTypeRecovery
    extra = 0


@admin.register(models.JobType)
class JobTypeAdmin(admin.ModelAdmin):
    list_display = ("name", "experiment", "batch_system", "creator_role")
    inlines = [RecoveryInline]


@admin.register(models.Stage)
class StageAdmin(admin.ModelAdmin):
    list_display = ("name", "campaign", "experiment", "stage_type", "split_type", "creator_role")
    list_filter = ("experiment", "stage_type")
    raw_id_fields = ("campaign",)


@admin.register(models.Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ("name", "experiment", "active", "creator_role")
    list_filter = ("experiment", "active")


for model in (models.LoginSetup, models.JobTypeRecovery, models.Tag, models.StageDependency, models.Watch):
    admin.site.register(model)


@admin.register(models.ConfigSnapshot)
class ConfigSnapshotAdmin(admin.ModelAdmin):
    list_display = ("digest", "created")
    readonly_fields = ("digest", "content", "created")
