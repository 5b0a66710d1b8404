from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "casewatch.notify"
    label = "notify"
    default_auto_field = "django.db.models.BigAutoField"
