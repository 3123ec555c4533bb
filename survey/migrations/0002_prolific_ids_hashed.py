"""Prolific ids become keyed hashes (survey.prolific); ids of people who were
screened out or withdrew move to ProlificExclusion, nothing else of theirs kept."""
import django.db.models.deletion
from django.db import migrations, models


def hash_existing_ids(apps, schema_editor):
    from survey.prolific import prolific_id_hash, prolific_session_hash

    Participant = apps.get_model("survey", "Participant")
    ProlificExclusion = apps.get_model("survey", "ProlificExclusion")
    for participant in Participant.objects.exclude(prolific_pid="", prolific_session_id=""):
        pid_hash = prolific_id_hash(study_id=participant.study_id, prolific_id=participant.prolific_pid)
        if participant.status in ("screened_out", "withdrawn"):
            if pid_hash:
                ProlificExclusion.objects.get_or_create(study_id=participant.study_id, prolific_pid_hash=pid_hash)
            participant.prolific_pid_hash = participant.prolific_session_hash = ""
        else:
            participant.prolific_pid_hash = pid_hash
            participant.prolific_session_hash = prolific_session_hash(study_id=participant.study_id,
                                                                      session_id=participant.prolific_session_id)
        participant.prolific_pid = participant.prolific_session_id = ""
        participant.save(update_fields=["prolific_pid", "prolific_session_id", "prolific_pid_hash", "prolific_session_hash"])


class Migration(migrations.Migration):

    dependencies = [
        ('survey', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='ProlificExclusion',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('prolific_pid_hash', models.CharField(max_length=64)),
                ('study', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='survey.study')),
            ],
        ),
        migrations.AddConstraint(
            model_name='prolificexclusion',
            constraint=models.UniqueConstraint(fields=('study', 'prolific_pid_hash'), name='prolific_exclusion_unique'),
        ),
        migrations.AddField(
            model_name='participant',
            name='prolific_pid_hash',
            field=models.CharField(blank=True, editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name='participant',
            name='prolific_session_hash',
            field=models.CharField(blank=True, editable=False, max_length=64),
        ),
        migrations.RunPython(hash_existing_ids, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name='participant',
            name='participant_prolific_pid_unique',
        ),
        migrations.RemoveField(
            model_name='participant',
            name='prolific_pid',
        ),
        migrations.RemoveField(
            model_name='participant',
            name='prolific_session_id',
        ),
        migrations.AddConstraint(
            model_name='participant',
            constraint=models.UniqueConstraint(condition=models.Q(('prolific_pid_hash', ''), _negated=True), fields=('study', 'prolific_pid_hash'), name='participant_prolific_pid_hash_unique'),
        ),
    ]
