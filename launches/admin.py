from django.contrib import admin

from .models import HeldLaunch, LaunchHold


@admin.register(HeldLaunch)
class HeldLaunchAdmin(admin.ModelAdmin):
    list_display = ("stage", "launcher", "created", "dataset", "test")
    raw_id_fields = ("stage", "parent")


admin.site.register(LaunchHold)
