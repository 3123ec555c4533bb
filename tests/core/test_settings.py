"""Settings come from the environment; production refuses to start unsafe."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRINT_SETTINGS = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({
    "db_engine": settings.DATABASES["default"]["ENGINE"],
    "db_name": str(settings.DATABASES["default"]["NAME"]),
    "db_host": settings.DATABASES["default"].get("HOST", ""),
    "broker": settings.CELERY_BROKER_URL,
    "broker_options": settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    "results": settings.CELERY_RESULT_BACKEND,
    "cache": settings.CACHES["default"]["BACKEND"],
    "debug": settings.DEBUG,
    "allowed_hosts": settings.ALLOWED_HOSTS,
    "secret_key_length": len(settings.SECRET_KEY),
    "var_dir": str(settings.VAR_DIR),
}))
"""

ENV_KEYS = ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS", "DEBUG",
            "DJANGO_ALLOW_ASYNC_UNSAFE")


def run_settings(module, tmp_path, **env):
    clean = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    clean.update({"DJANGO_SETTINGS_MODULE": module, "ATTUNE_VAR_DIR": str(tmp_path / "var")}, **env)
    result = subprocess.run([sys.executable, "-c", PRINT_SETTINGS], cwd=ROOT, env=clean, capture_output=True, text=True)
    return result


def test_defaults_need_no_services(tmp_path):
    result = run_settings("config.settings.local", tmp_path)
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["db_engine"] == "django.db.backends.sqlite3"
    assert values["db_name"] == str(tmp_path / "var" / "attune.sqlite3")
    assert values["broker"] == "filesystem://"
    assert values["broker_options"]["data_folder_in"] == str(tmp_path / "var" / "broker" / "queue")
    assert values["results"].startswith("file://")
    assert values["cache"].endswith("FileBasedCache")
    assert values["debug"] is True
    # The secret key is generated once and reused.
    key_file = tmp_path / "var" / "secret_key"
    assert key_file.exists() and values["secret_key_length"] >= 50
    first_key = key_file.read_text()
    assert run_settings("config.settings.local", tmp_path).returncode == 0
    assert key_file.read_text() == first_key


def test_environment_overrides(tmp_path):
    result = run_settings(
        "config.settings.local",
        tmp_path,
        DATABASE_URL="postgres://alice@db.internal:5433/attune_x",
        CELERY_BROKER_URL="redis://cache.internal:6379/3",
        REDIS_URL="redis://cache.internal:6379/4",
        ALLOWED_HOSTS="attune.example.org,www.attune.example.org",
        DEBUG="false",
        SECRET_KEY="k" * 60,
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["db_engine"] == "django.db.backends.postgresql"
    assert values["db_name"] == "attune_x" and values["db_host"] == "db.internal"
    assert values["broker"] == "redis://cache.internal:6379/3"
    assert values["results"] == "redis://cache.internal:6379/3"
    # Redis redelivers tasks that outlive the visibility timeout: it must exceed the longest job.
    assert values["broker_options"]["visibility_timeout"] >= 60 * 60 * 20
    assert values["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert values["allowed_hosts"] == ["attune.example.org", "www.attune.example.org"]
    assert values["debug"] is False
    assert values["secret_key_length"] == 60
    assert not (tmp_path / "var" / "secret_key").exists()


def test_production_requires_secret_key(tmp_path):
    result = run_settings("config.settings.production", tmp_path, ALLOWED_HOSTS="attune.example.org")
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_production_check_deploy_is_clean(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        ATTUNE_VAR_DIR=str(tmp_path / "var"),
        SECRET_KEY="x9!" + "Zq7#pL2@" * 8,
        ALLOWED_HOSTS="attune.example.org",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_celery_reliability_settings(settings):
    assert settings.CELERY_TASK_ACKS_LATE is True
    assert settings.CELERY_TASK_REJECT_ON_WORKER_LOST is True
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
    assert settings.CELERY_TASK_DEFAULT_QUEUE == "default"
    from config.celery import app

    assert app.amqp.router.route({}, "training.tasks.gpu_train_policy")["queue"].name == "gpu"
    assert app.amqp.router.route({}, "core.ping")["queue"].name == "default"
