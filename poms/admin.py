from django.contrib import admin

from .models import ApiToken, Experiment, Membership, Preference


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ("name", "description", "active")


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "experiment", "role", "active")
    list_filter = ("experiment", "role")


admin.site.register(Preference)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("user", "name", "created", "last_used")
    readonly_fields = ("digest",)
