"""Test settings: real PostgreSQL and Redis, from the environment or local defaults."""

import os
import tempfile

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/automation")


def _claim_redis_db() -> str:
    """A Redis database of our own: tests flush it, so two test sessions must not share one.

    The claim is a key in db 0 that expires; the worker subprocess inherits REDIS_URL.
    """
    import redis

    base = "redis://127.0.0.1:6379"
    claims = redis.Redis.from_url(f"{base}/0")
    for db in range(15, 0, -1):
        if claims.set(f"automation-tests:db:{db}", os.getpid(), nx=True, ex=3 * 3600):
            import atexit

            atexit.register(claims.delete, f"automation-tests:db:{db}")
            return f"{base}/{db}"
    raise RuntimeError("no free Redis database for this test session")


if "REDIS_URL" not in os.environ:
    os.environ["REDIS_URL"] = _claim_redis_db()
os.environ.setdefault("SECRET_KEY", "tests-only-secret-key")
os.environ.setdefault("AUTOMATION_EXTRA_JOB_MODULES", "tests.jobs")
# Short run leases, so tests of lost and duplicate attempts wait seconds, not half a minute.
os.environ.setdefault("AUTOMATION_RUN_LEASE_SECONDS", "4")
# One fresh metrics directory per test session, shared with the worker subprocess.
os.environ.setdefault("METRICS_DIR", tempfile.mkdtemp(prefix="automation-metrics-"))

from config.settings import *  # noqa: E402, F403

# One test database per test session, so sessions running side by side do not drop
# each other's database (the worker subprocess is handed the name explicitly).
DATABASES["default"]["TEST"] = {"NAME": f"test_automation_{os.getpid()}"}  # noqa: F405

# In memory, except for worker processes a test points at its SMTP server (chaos tests).
EMAIL_BACKEND = os.environ.get("TEST_EMAIL_BACKEND",
                               "django.core.mail.backends.locmem.EmailBackend")
STRIPE_API_KEY = "sk_test_local"
STRIPE_WEBHOOK_SECRET = "whsec_tests_only"
SITE_URL = "http://testserver"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Archive and warehouse go to a throwaway directory unless a test points them at the
# local S3 server (see the s3_storages fixture).
_OBJECTS = tempfile.mkdtemp(prefix="automation-objects-")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    # An S3 bucket where the environment names one (a worker of a chaos test), like
    # production; else a throwaway directory.
    **{name: (object_storage(name) if os.environ.get(f"{name.upper()}_S3_BUCKET") else  # noqa: F405
              {"BACKEND": "django.core.files.storage.FileSystemStorage",
               "OPTIONS": {"location": f"{_OBJECTS}/{name}", "allow_overwrite": True}})
       for name in ("archive", "warehouse")},
}
# Static files are served from the finders in tests; nothing is collected.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
