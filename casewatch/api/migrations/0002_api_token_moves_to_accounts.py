"""ApiToken now lives in `accounts` (accounts 0005): the API's tables point their
foreign keys at it there, and the old model leaves the state. Nothing changes in the
database: the table, its rows and the constraints stay as they are."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("api", "0001_initial"),
        ("accounts", "0005_api_token_moves_to_accounts"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="idempotentresponse",
                    name="token",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.apitoken",
                    ),
                ),
                migrations.AlterField(
                    model_name="ratewindow",
                    name="token",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.apitoken",
                    ),
                ),
                migrations.DeleteModel(name="ApiToken"),
            ],
            database_operations=[],
        ),
    ]
