from django.apps import AppConfig


class PomsConfig(AppConfig):
    name = "poms"
    verbose_name = "POMS accounts"
