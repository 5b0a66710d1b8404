from django.apps import AppConfig


class MonitorConfig(AppConfig):
    name = "casewatch.monitor"
    label = "monitor"
    verbose_name = "USCIS monitor"
    default_auto_field = "django.db.models.BigAutoField"
