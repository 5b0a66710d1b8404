"""Outbound webhooks: the delivery log's link, the outcome outbox mark, new event kinds."""

from typing import Any

import django.db.models.deletion
from django.db import migrations, models
from django.db.models.functions import Now


def _mark_old_outcomes(apps: Any, schema_editor: Any) -> None:
    """Messages delivered or failed before webhooks existed are not announced now."""
    notification = apps.get_model("notify", "Notification")
    finished = models.Q(delivered_at__isnull=False) | models.Q(failed_at__isnull=False)
    notification.objects.filter(finished).update(outcome_routed_at=Now())


class Migration(migrations.Migration):
    dependencies = [
        ("notify", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="notification",
            name="endpoint",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="deliveries",
                to="notify.webhookendpoint",
            ),
        ),
        migrations.AddField(
            model_name="notification",
            name="outcome_routed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="notification",
            name="kind",
            field=models.CharField(
                choices=[
                    ("status_change", "Status change"),
                    ("uscis_outage", "USCIS unreadable"),
                    ("uscis_recovered", "USCIS readable again"),
                    ("receipt_pending", "Receipt still pending"),
                    ("escalation", "Change not acknowledged"),
                    ("card_delivery_check", "Confirm the card arrived"),
                    ("digest", "Daily digest"),
                    ("client_reply", "Client replied"),
                    ("delivery_problem", "A message could not be delivered"),
                    ("deadline_created", "Deadline created"),
                    ("notification_delivered", "Message delivered"),
                    ("notification_failed", "Message failed"),
                    ("webhook_test", "Test event"),
                ],
                max_length=32,
            ),
        ),
        migrations.AlterField(
            model_name="routingrule",
            name="kind",
            field=models.CharField(
                blank=True,
                choices=[
                    ("status_change", "Status change"),
                    ("uscis_outage", "USCIS unreadable"),
                    ("uscis_recovered", "USCIS readable again"),
                    ("receipt_pending", "Receipt still pending"),
                    ("escalation", "Change not acknowledged"),
                    ("card_delivery_check", "Confirm the card arrived"),
                    ("digest", "Daily digest"),
                    ("client_reply", "Client replied"),
                    ("delivery_problem", "A message could not be delivered"),
                    ("deadline_created", "Deadline created"),
                    ("notification_delivered", "Message delivered"),
                    ("notification_failed", "Message failed"),
                    ("webhook_test", "Test event"),
                ],
                default="",
                max_length=32,
            ),
        ),
        migrations.AddIndex(
            model_name="notification",
            index=models.Index(
                condition=models.Q(
                    ("channel__in", ["whatsapp", "sms", "email"]),
                    ("outcome_routed_at__isnull", True),
                ),
                fields=["status"],
                name="notification_outcome_due",
            ),
        ),
        migrations.RunPython(_mark_old_outcomes, migrations.RunPython.noop),
    ]
