"""Settings, all read from the environment (see .env.example for every variable).

With nothing configured the app runs on SQLite and a Redis at 127.0.0.1:6379, which is
what `scripts/run` provides on a bare machine.
"""

import os
import socket
from pathlib import Path

import environ
from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# A fixed development key is only acceptable while DEBUG is on.
SECRET_KEY = env("SECRET_KEY", default="insecure-development-key" if DEBUG else None)
if not SECRET_KEY:
    raise environ.ImproperlyConfigured("Set SECRET_KEY (or DEBUG=true for development).")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "config.apps.AutomationAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "django_celery_results",
    "rest_framework",
    "drf_spectacular",
    "communities",
    "automation",
    "integrations",
    "notifications",
    "billing",
    "analytics",
    "moderation",
    "api",
    "dashboard",
    "monitoring",
]

MIDDLEWARE = [
    # First: under /api/ it bounds the body before anything reads it and answers every
    # error, Django's own included, as the API's JSON.
    "api.middleware.ApiBoundaryMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "automation.audit.AuditActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, beat and three workers share one file: WAL lets readers run beside the writer,
    # IMMEDIATE transactions and a timeout turn lock contention into waiting, not errors.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"


def object_storage(name: str) -> dict:
    """An S3 bucket when <NAME>_S3_BUCKET is set, else a local directory under var/.

    Archives and the analytics warehouse are written under deterministic keys so that a
    re-run overwrites its own object; both backends are told to overwrite, not rename.
    """
    bucket = env(f"{name.upper()}_S3_BUCKET", default="")
    if bucket:
        return {
            "BACKEND": "config.storages.ObjectS3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "endpoint_url": env("AWS_S3_ENDPOINT_URL", default=None),
                "region_name": env("AWS_S3_REGION_NAME", default=None),
                "file_overwrite": True,
                "default_acl": None,
                "querystring_auth": False,
            },
        }
    return {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {
            "location": env(f"{name.upper()}_DIR", default=str(BASE_DIR / "var" / name)),
            "allow_overwrite": True,
        },
    }


STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    # gzip JSON Lines archives of members and content past retention, with manifests.
    "archive": object_storage("archive"),
    # The analytics warehouse sink: partitioned JSON Lines written by backfill replays.
    "warehouse": object_storage("warehouse"),
}

EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env("EMAIL_HOST", default="127.0.0.1")
EMAIL_PORT = env.int("EMAIL_PORT", default=1025)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
# Where the file-based backend (the demo's) writes each message.
EMAIL_FILE_PATH = env("EMAIL_FILE_PATH", default=str(BASE_DIR / "var" / "mail"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="automation@localhost")

# --- Redis and Celery ---------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")

# Empty (as .env.example leaves it) counts as unset: the broker is then REDIS_URL.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="") or REDIS_URL
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default="django-db")
CELERY_RESULT_EXTENDED = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
# Jobs are idempotent per (community, slot), so a message is acknowledged only after the
# job finished and redelivered if the worker process died under it.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Jobs run for seconds to minutes: one reserved message per process keeps long jobs from
# hoarding work that an idle process could take.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Broker choice (docs/broker.md): RabbitMQ (amqp://) in production, Redis (the default, the
# demo's) otherwise. Both keep working through a broker restart: a worker reconnects for
# as long as it takes (None: no limit; Celery's default gives up after 100 attempts).
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
BROKER_IS_AMQP = CELERY_BROKER_URL.split("://", 1)[0] in ("amqp", "amqps", "pyamqp")
# Redis only: must exceed the longest hard time limit, or Redis redelivers a running job's
# message; it is also how long a message taken by a lost worker stays invisible.
REDIS_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=4 * 3600)
if BROKER_IS_AMQP:
    # Publisher confirms: apply_async returns only once RabbitMQ has taken the message
    # (written to disk for a persistent message on a durable queue). Queues and exchanges
    # (config/celery.py) are durable and messages persistent by default (kombu's
    # durable=True, Celery's task_default_delivery_mode=2), stated here so it is visible.
    # RabbitMQ itself must run with consumer_timeout above the longest hard time limit
    # (deploy/rabbitmq/rabbitmq.conf), or it closes the channel of a long acks_late job.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
    CELERY_TASK_DEFAULT_DELIVERY_MODE = "persistent"
    # A publish (web, beat, a job's retry) rides out a broker restart of ~10 s: retries at
    # 0, 1, 2, 3, 4 s instead of Celery's default ~0.6 s in total.
    CELERY_TASK_PUBLISH_RETRY_POLICY = {
        "max_retries": 5, "interval_start": 0, "interval_step": 1, "interval_max": 4,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": REDIS_VISIBILITY_TIMEOUT}
# On a lost broker connection a running acks_late job keeps running (Celery 5's default,
# stated because 6.0 flips it): its message goes back to the queue, and the second delivery
# finds the run lock held by the live attempt, so the job does not run twice. Cancelling
# instead would throw away the work done so far (up to hours) at every broker blip.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_TASK_DEFAULT_QUEUE = "automation"
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_BEAT_SCHEDULER = env(
    "CELERY_BEAT_SCHEDULER", default="automation.beat.scheduler:BeatScheduler"
)
CELERY_TASK_ALWAYS_EAGER = False
# Platform schedules (not per tenant); beat stores them beside the tenant rows.
CELERY_BEAT_SCHEDULE = {
    # Notifications are delivered right after they are written; the sweep picks up any
    # whose delivery message was lost or whose channel was down.
    "notifications-outbox-sweep": {
        "task": "notifications.deliver_pending",
        "schedule": env.float("NOTIFICATIONS_SWEEP_SECONDS", default=60.0),
    },
    # Monitoring (docs/monitoring.md). The heartbeat's publish stamps beat's last tick.
    "monitoring-beat-heartbeat": {
        "task": "monitoring.beat_heartbeat",
        "schedule": env.float("MONITORING_HEARTBEAT_SECONDS", default=30.0),
        "options": {"expire_seconds": 25},
    },
    "monitoring-check-alerts": {
        "task": "monitoring.check_alerts",
        "schedule": 60.0,
        "options": {"expire_seconds": 55},
    },
    "monitoring-missed-run-watchdog": {
        "task": "monitoring.missed_run_watchdog",
        "schedule": env.float("AUTOMATION_WATCHDOG_INTERVAL_SECONDS", default=300.0),
    },
    # A lost attempt is resumed within the run lease + this interval (docs/reliability.md).
    "monitoring-reap-stuck-runs": {
        "task": "monitoring.reap_stuck_runs",
        "schedule": env.float("AUTOMATION_REAPER_INTERVAL_SECONDS", default=60.0),
    },
    "monitoring-prune-run-history": {
        "task": "monitoring.prune_run_history",
        "schedule": crontab(minute="17", hour="3"),
    },
}
DJANGO_CELERY_BEAT_TZ_AWARE = True

# --- Automation platform ------------------------------------------------------------
# Extra modules holding @tenant_job definitions beyond each app's `jobs` package.
AUTOMATION_EXTRA_JOB_MODULES = env.list("AUTOMATION_EXTRA_JOB_MODULES", default=[])
# A manual trigger refuses (409) while a queued or running run of the same job and community
# is younger than the job's hard time limit + this; older ones are the reaper's to settle.
AUTOMATION_LOCK_MARGIN_SECONDS = env.int("AUTOMATION_LOCK_MARGIN_SECONDS", default=60)
# A manual trigger of the same job for the same community is refused (429) within this.
AUTOMATION_TRIGGER_COOLDOWN_SECONDS = env.int("AUTOMATION_TRIGGER_COOLDOWN_SECONDS", default=10)
# Outbound URLs (tenant webhooks and Slack channels, the platform's Slack, alert and push
# URLs: automation/outbound_urls.py) may point at plain loopback only where an operator
# allows it (development, tests, the demo). Any other address that is not globally
# routable, including IPv4 embedded in IPv6 forms, is never allowed.
WEBHOOKS_ALLOW_LOOPBACK = env.bool("WEBHOOKS_ALLOW_LOOPBACK", default=False)

# Prometheus multiprocess mode: every process writes its samples to files that /metrics
# merges. METRICS_DIR is shared by web and workers; each host (container) writes into its
# own subdirectory, because process ids repeat across containers. prometheus-client reads
# PROMETHEUS_MULTIPROC_DIR when first imported, so it is set here, before any metric loads.
METRICS_DIR = Path(env("METRICS_DIR", default=str(BASE_DIR / "var" / "prometheus")))
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(METRICS_DIR / socket.gethostname()))
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

# --- External services of the catalogue ------------------------------------------
# Stripe: the secret key and the webhook endpoint's signing secret. STRIPE_API_BASE points
# the SDK elsewhere (a local Stripe-speaking server in tests and the demo).
STRIPE_API_KEY = env("STRIPE_API_KEY", default="")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env("STRIPE_API_BASE", default="")
# Dunning policy: days after the first failure on which payment is retried again.
BILLING_RETRY_DAYS = env.list("BILLING_RETRY_DAYS", cast=int, default=[1, 3, 5, 7])

# Leaderboards may live on a Redis of their own (pages read them heavily); empty: REDIS_URL.
ANALYTICS_REDIS_URL = env("ANALYTICS_REDIS_URL", default="")

# Slack incoming webhook of the Trust & Safety channel that moderation escalates to.
TRUST_SAFETY_SLACK_WEBHOOK_URL = env("TRUST_SAFETY_SLACK_WEBHOOK_URL", default="")
# Base URL of this site, for links in emails and Slack messages.
SITE_URL = env("SITE_URL", default="http://127.0.0.1:8000")

# Push provider (FCM/Web Push style HTTP API): POST {token, title, body, data}.
PUSH_PROVIDER_URL = env("PUSH_PROVIDER_URL", default="")
PUSH_PROVIDER_TOKEN = env("PUSH_PROVIDER_TOKEN", default="")

# Bearer token Prometheus must send to /metrics; empty leaves it open (private networks).
METRICS_TOKEN = env("METRICS_TOKEN", default="")
# Scrape-time collectors added to /metrics (queue depth, beat's tick, job periods, ...).
METRICS_EXTRA_COLLECTORS = ["monitoring.collector.PlatformCollector"]
# Broker queues whose depth /metrics reports.
MONITORING_QUEUES = env.list("MONITORING_QUEUES", default=["automation", "notifications",
                                                            "billing"])

# --- Monitoring: in-app alerts, missed-run watchdog, reaper, retention (docs/monitoring.md)
# Failure, timeout and missed-run notices go to a Slack incoming webhook and/or these
# addresses; an alert notifies when it opens, then at most once per cooldown while it
# recurs, and once when it resolves.
ALERT_SLACK_WEBHOOK_URL = env("ALERT_SLACK_WEBHOOK_URL", default="")
ALERT_EMAILS = env.list("ALERT_EMAILS", default=[])
ALERT_COOLDOWN_SECONDS = env.int("ALERT_COOLDOWN_SECONDS", default=3600)
ALERT_HTTP_TIMEOUT_SECONDS = env.float("ALERT_HTTP_TIMEOUT_SECONDS", default=10.0)
# A scheduled slot counts as missed once it is this old with no run (and older than the
# oldest message waiting in its queue); the watchdog looks back at most this far.
AUTOMATION_WATCHDOG_GRACE_SECONDS = env.int("AUTOMATION_WATCHDOG_GRACE_SECONDS", default=600)
AUTOMATION_WATCHDOG_LOOKBACK_SECONDS = env.int("AUTOMATION_WATCHDOG_LOOKBACK_SECONDS",
                                               default=6 * 3600)
# A running attempt holds its run lock as a lease of this many seconds, renewed every third
# of it; a lease that expires means the attempt's process is gone (docs/reliability.md).
AUTOMATION_RUN_LEASE_SECONDS = env.int("AUTOMATION_RUN_LEASE_SECONDS", default=30)
# A run resumed this many times after losing its worker fails instead (a job that kills its
# worker every time, e.g. by running out of memory, must not loop forever).
AUTOMATION_MAX_RESUMES = env.int("AUTOMATION_MAX_RESUMES", default=3)
# A queued run this long past its message's due time, in a queue that has moved past it, has
# lost its message (a broker restarted without persistence, a failed publish): re-published.
AUTOMATION_REQUEUE_AFTER_SECONDS = env.int("AUTOMATION_REQUEUE_AFTER_SECONDS", default=300)
# Database, Redis or broker errors are retried on this budget of their own (backoff 1 s
# doubling up to the cap), not the job's: ~20 minutes of outage at the defaults.
AUTOMATION_INFRA_MAX_RETRIES = env.int("AUTOMATION_INFRA_MAX_RETRIES", default=25)
AUTOMATION_INFRA_BACKOFF_CAP_SECONDS = env.float("AUTOMATION_INFRA_BACKOFF_CAP_SECONDS",
                                                 default=60.0)
# A run still `queued` and never started this long after creation was never picked up.
AUTOMATION_REAPER_QUEUED_SECONDS = env.int(
    "AUTOMATION_REAPER_QUEUED_SECONDS",
    default=REDIS_VISIBILITY_TIMEOUT,
)
# Run records (JobRun, Celery TaskResult) older than this are deleted nightly, in batches.
AUTOMATION_RUN_RETENTION_DAYS = env.int("AUTOMATION_RUN_RETENTION_DAYS", default=90)
AUTOMATION_PRUNE_BATCH_SIZE = env.int("AUTOMATION_PRUNE_BATCH_SIZE", default=5000)
AUTOMATION_PRUNE_TIME_BUDGET_SECONDS = env.float("AUTOMATION_PRUNE_TIME_BUDGET_SECONDS",
                                                 default=600.0)

# The REST API's operator bearer token (every job, every community); empty: no operator
# access. Communities' own API keys are created in admin.
AUTOMATION_API_TOKEN = env("AUTOMATION_API_TOKEN", default="")
# The API's input limits (docs/api.md): a larger body answers 413 before it is read or
# parsed; JSON nested deeper answers 400 before it is parsed (Python's json recurses once
# per level and fails near 1000).
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=1024 * 1024)
API_MAX_JSON_DEPTH = env.int("API_MAX_JSON_DEPTH", default=32)
if API_MAX_BODY_BYTES < 1 or not 1 <= API_MAX_JSON_DEPTH <= 500:
    raise environ.ImproperlyConfigured(
        "API_MAX_BODY_BYTES must be positive and API_MAX_JSON_DEPTH between 1 and 500.")
# The API's views set their own auth, parsers and errors (api/views.py); drf-spectacular's
# schema class must be the global default for its per-method annotations.
REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
SPECTACULAR_SETTINGS = {
    "TITLE": "Community automation API",
    "DESCRIPTION": "Operators (bearer token) see and steer every job; a community's API key "
                   "reaches that community's jobs and runs only. See docs/api.md.",
    "VERSION": "1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api",
    "ENUM_GENERATE_CHOICE_DESCRIPTION": False,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}
