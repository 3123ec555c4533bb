"""Settings shared by every environment; every value that differs between
machines comes from the environment (django-environ)."""
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()

# Local state (SQLite file, filesystem broker, model cache, artifacts) lives here.
VAR_DIR = Path(env("ATTUNE_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "axes",
    "csp",
    "core",
    "survey",
    "annotation",
    "training",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Refuses control characters and repeated single-valued fields with a 400
    # before anything else reads the input (core/input.py).
    "core.input.InputGuardMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "core.middleware.AbsoluteSessionLifetimeMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Renders an ApplicationError a view raised as its app's error page (core/error_handlers.py).
    "core.error_handlers.ApplicationErrorMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # django-csp's, with the site's policy built once (core/middleware.py).
    "core.middleware.CSPMiddleware",
    # django-axes must come last so it sees the outcome of authentication.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "core.context_processors.support",
                "survey.context_processors.active_study",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'attune.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# Persistent connections (measured in bench/README.md: a new connection per request costs the
# database a backend start each time); health checks replace one that broke between requests.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=True)
if "postgresql" in DATABASES["default"]["ENGINE"]:
    # Prepared statements: with server-side binding psycopg prepares a statement after it has run
    # DATABASE_PREPARE_THRESHOLD times on a connection, and a persistent connection then skips
    # PostgreSQL's planning of it (planning was most of the survey's database time; bench/README.md).
    # 0 turns them off (a connection pooler in transaction mode cannot keep them).
    prepare_threshold = env.int("DATABASE_PREPARE_THRESHOLD", default=5)
    if prepare_threshold > 0:
        DATABASES["default"].setdefault("OPTIONS", {}).update({"server_side_binding": True, "prepare_threshold": prepare_threshold})
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The laptop default: the web server, the worker and its heartbeat thread all
    # write; wait for the lock instead of failing, and take it up front.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 30, "transaction_mode": "IMMEDIATE"})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    # A file cache is shared by the web and worker processes, unlike locmem.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "post-login"
LOGOUT_REDIRECT_URL = "login"

# Login throttling (core/network.py): a username is locked after
# AXES_FAILURE_LIMIT failures, and an address after ATTUNE_LOGIN_ADDRESS_FAILURE_LIMIT
# failures across any usernames (password spraying), for AXES_COOLOFF_HOURS.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
ATTUNE_LOGIN_ADDRESS_FAILURE_LIMIT = env.int("ATTUNE_LOGIN_ADDRESS_FAILURE_LIMIT", default=30)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=1.0)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_HANDLER = "core.network.LoginLockoutHandler"
AXES_RESET_ON_SUCCESS = True
# Reverse proxies in front of Django that append to X-Forwarded-For (the compose
# `proxy` service is one). 0: the header is ignored and REMOTE_ADDR is the client.
ATTUNE_TRUSTED_PROXY_COUNT = env.int("ATTUNE_TRUSTED_PROXY_COUNT", default=0)
AXES_CLIENT_IP_CALLABLE = "core.network.client_ip"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

# Sessions: idle expiry by cookie age, plus an absolute cap (core.middleware).
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=60 * 60 * 8)
SESSION_ABSOLUTE_LIFETIME = env.int("SESSION_ABSOLUTE_LIFETIME", default=60 * 60 * 12)
SESSION_SAVE_EVERY_REQUEST = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        # The admin sets inline style attributes; scripts stay strict.
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'self'"],
    }
}

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
MEDIA_ROOT = VAR_DIR / "media"
# Datasets, checkpoints and reports written by workers.
ARTIFACT_ROOT = Path(env("ATTUNE_ARTIFACT_ROOT", default=str(VAR_DIR / "artifacts")))
MODEL_CACHE_DIR = Path(env("ATTUNE_MODEL_CACHE", default=str(VAR_DIR / "models")))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.error_handlers.api_exception_handler",
    # JSON only: the schema lists the content types the API accepts, and one parser means one set of rules
    # (a form body could not carry a null, and would turn "0" into False); any other type gets 415.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    # Counted with an atomic increment (core/throttling.py), so concurrent requests cannot slip past.
    "DEFAULT_THROTTLE_CLASSES": ["core.throttling.AnonRateThrottle", "core.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"anon": env("API_ANON_RATE", default="120/min"), "user": env("API_USER_RATE", default="600/min")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Attune API",
    "DESCRIPTION": "Survey, clinician rating and training endpoints of the Attune platform.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # 3.1: `propertyNames` (object keys) exists only from 3.1 on, and the input guard's rule covers keys too.
    "OAS_VERSION": "3.1.0",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "core.api_schema.guard_request_schemas"],
}

# Celery: PostgreSQL owns job state; the broker only carries wake-ups.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's filesystem transport: a real broker with no server, for laptops.
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    _default_results = f"file://{VAR_DIR / 'celery-results'}"
    (VAR_DIR / "celery-results").mkdir(parents=True, exist_ok=True)
else:
    # Above the longest job, or Redis redelivers a task that is still running.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=60 * 60 * 24)}
    _default_results = CELERY_BROKER_URL
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=_default_results)
CELERY_RESULT_EXPIRES = 60 * 60 * 24
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"*.gpu_*": {"queue": "gpu"}}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=60 * 60 * 20)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=60 * 60 * 19)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Participant-facing text.
ATTUNE_STUDY_NAME = env("ATTUNE_STUDY_NAME", default="Attune")
ATTUNE_DEFAULT_HELPLINE_REGION = env("ATTUNE_DEFAULT_HELPLINE_REGION", default="International")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    # runserver's one line per request follows LOG_LEVEL too (`make demo` sets WARNING: errors only).
    "loggers": {"django.server": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO"), "propagate": False}},
}

# Training jobs: a running job renews its lease with each heartbeat; a job whose
# lease lapses is requeued by the recovery loop (`manage.py recover_jobs`, up to Job.max_attempts).
ATTUNE_JOB_LEASE_SECONDS = env.int("ATTUNE_JOB_LEASE_SECONDS", default=60)
ATTUNE_JOB_HEARTBEAT_SECONDS = env.float("ATTUNE_JOB_HEARTBEAT_SECONDS", default=10.0)
# A queued job whose publish after commit never happened (no published_at) is republished after this long.
ATTUNE_JOB_UNPUBLISHED_GRACE_SECONDS = env.int("ATTUNE_JOB_UNPUBLISHED_GRACE_SECONDS", default=20)
# A queued job the broker accepted but no worker has claimed is published again after this long (a broker
# that lost its messages); not sooner, since a job may rightly wait behind a long one.
ATTUNE_JOB_REPUBLISH_SECONDS = env.int("ATTUNE_JOB_REPUBLISH_SECONDS", default=600)
# How often the recovery loop looks for lapsed leases and lost messages.
ATTUNE_RECOVERY_INTERVAL_SECONDS = env.float("ATTUNE_RECOVERY_INTERVAL_SECONDS", default=5.0)
# How a queued job reaches a worker (training.jobs.queue): "celery" sends it to its
# Celery queue; "inline" runs it in this process after commit (manage.py run_experiment).
ATTUNE_JOB_QUEUE = env("ATTUNE_JOB_QUEUE", default="celery")
# 0: policies train inside the worker process. N >= 1: through `accelerate launch`
# with N processes (one per GPU), optionally with an accelerate config file.
ATTUNE_ACCELERATE_NUM_PROCESSES = env.int("ATTUNE_ACCELERATE_NUM_PROCESSES", default=0)
ATTUNE_ACCELERATE_CONFIG = env("ATTUNE_ACCELERATE_CONFIG", default="") or None
# Where Start runs on a machine without the GPU workers' hardware (the web container): "yes" says the GPU
# workers can run 4-bit QLoRA, so Start does not probe its own process for it; the policy job still checks
# on its worker and refuses there if not.
ATTUNE_QLORA_WORKERS = env.bool("ATTUNE_QLORA_WORKERS", default=False)
