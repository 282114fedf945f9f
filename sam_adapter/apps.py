from django.apps import AppConfig


class SamAdapterConfig(AppConfig):
    name = "sam_adapter"
    verbose_name = "data handling and the built-in file catalogue"
