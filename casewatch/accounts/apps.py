from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "casewatch.accounts"
    label = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Logins, failed logins and logouts go to the audit chain.
        from casewatch.accounts import signals

        signals.connect()
