from django.contrib import admin

from .models import Job, JobEvent, StatusHistory, Submission

# The ledger is written only through submissions.services; the admin shows it read-only, and
# deletes nothing (a poll worker's copy of the job rows trusts that only polls write them).


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Submission)
class SubmissionAdmin(ReadOnly):
    list_display = ("id", "stage", "status", "batch_id", "launcher", "created")
    list_filter = ("status", "batch_system")
    raw_id_fields = ("stage", "snapshot", "recovery_parent")


@admin.register(StatusHistory)
class StatusHistoryAdmin(ReadOnly):
    list_display = ("submission", "status", "created", "user", "cause")
    raw_id_fields = ("submission",)


@admin.register(Job)
class JobAdmin(ReadOnly):
    list_display = ("batch_job_id", "submission", "state", "exit_code", "host")
    raw_id_fields = ("submission",)


@admin.register(JobEvent)
class JobEventAdmin(ReadOnly):
    list_display = ("job", "state", "created", "exit_code")
    raw_id_fields = ("job",)
