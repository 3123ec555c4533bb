"""Test runs: local settings with their own var/ folder and fast hashing."""
import os
from pathlib import Path

# Before base settings read it: tests never touch the demo's SQLite file or broker folder.
os.environ.setdefault("ATTUNE_VAR_DIR", str(Path(__file__).resolve().parent.parent.parent / "var" / "test"))

from .local import *  # noqa: E402,F401,F403
from .local import DATABASES, VAR_DIR  # noqa: E402

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
AXES_FAILURE_LIMIT = 3
ATTUNE_LOGIN_ADDRESS_FAILURE_LIMIT = 6
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not memory, so a worker process can open the same test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test_attune.sqlite3")}

# Runs from different checkouts on one machine (a developer's tree and a CI
# clone) must not share a test database or broker queues.
import hashlib  # noqa: E402

from .local import BASE_DIR, CELERY_BROKER_TRANSPORT_OPTIONS, CELERY_BROKER_URL  # noqa: E402

CHECKOUT_ID = hashlib.sha1(str(BASE_DIR).encode()).hexdigest()[:8]
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    DATABASES["default"]["TEST"] = {"NAME": f"test_attune_{CHECKOUT_ID}"}
from .local import CACHES  # noqa: E402

# The cache (rate-limit counters) of one checkout's tests is not another's.
CACHES["default"]["KEY_PREFIX"] = f"attune-test-{CHECKOUT_ID}"
if CELERY_BROKER_URL.startswith("redis://"):
    TEST_KEY_PREFIX = f"attune-test-{CHECKOUT_ID}:"
    CELERY_BROKER_TRANSPORT_OPTIONS = {**CELERY_BROKER_TRANSPORT_OPTIONS, "global_keyprefix": TEST_KEY_PREFIX}
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"global_keyprefix": TEST_KEY_PREFIX}
