import django.db.models.deletion
from django.db import migrations, models

import anchor.models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Participant",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("token", models.CharField(default=anchor.models.new_token, max_length=64, unique=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
        ),
        migrations.CreateModel(
            name="Answer",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("page", models.CharField(max_length=32)),
                ("data", models.JSONField(default=dict)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("participant", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="anchor.participant")),
            ],
            options={"constraints": [models.UniqueConstraint(fields=("participant", "page"), name="anchor_answer_once")]},
        ),
    ]
