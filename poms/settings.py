"""POMS settings. Every value comes from the environment (README "Configuration")."""

import os
import shlex
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name, default=""):
    return os.environ.get(name, default)


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(name, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from exc


def env_secret(name, default=None):
    """A secret from NAME or from the file named by NAME_FILE."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(name, default)


def database_from_url(url):
    """postgres://user:pass@host:port/name?host=/socket/dir → Django DATABASES entry."""
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql"):
        raise ImproperlyConfigured("DATABASE_URL must be a postgres:// URL")
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "poms",
        "USER": unquote(parsed.username or "postgres"),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": query.pop("host", None) or parsed.hostname or "",
        "PORT": str(parsed.port or ""),
        "CONN_MAX_AGE": env_int("POMS_DB_CONN_MAX_AGE", 60),
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"NAME": env_str("POMS_TEST_DB_NAME", "") or None},
    }


DEBUG = env_bool("POMS_DEBUG", False)
SECRET_KEY = env_secret("POMS_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG and not env_bool("POMS_INSECURE_DEV_KEY", False):
        raise ImproperlyConfigured("POMS_SECRET_KEY (or POMS_SECRET_KEY_FILE) must be set")
    SECRET_KEY = "insecure-development-key-never-use-in-production"
ALLOWED_HOSTS = [h for h in env_str("POMS_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in env_str("POMS_CSRF_TRUSTED_ORIGINS", "").split(",") if o]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("POMS_BEHIND_TLS_PROXY") else None
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("POMS_SECURE_COOKIES", False)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "poms",
    "campaigns",
    "submissions",
    "launches",
    "sam_adapter",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "poms.urls"
WSGI_APPLICATION = "poms.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.jinja2.Jinja2",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": False,
        "OPTIONS": {"environment": "poms.jinja2.environment", "autoescape": True},
    },
    {
        # The admin ships Django templates; ours are all Jinja2.
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    },
]

DATABASES = {"default": database_from_url(env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/poms"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "submissions:dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
# Only for `collectstatic` in production deployments; unset, files are served from static/.
STATIC_ROOT = env_str("POMS_STATIC_ROOT") or None
STATICFILES_DIRS = [BASE_DIR / "static"]
# Serve straight from static/ so that `make run` needs no collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- POMS ---------------------------------------------------------------------------------
VAR_DIR = Path(env_str("POMS_VAR_DIR", str(BASE_DIR / "var")))
# One launch log per submission lives under here (DESIGN §6).
POMS_LOG_ROOT = Path(env_str("POMS_LOG_ROOT", str(VAR_DIR / "logs")))
# The local batch system keeps its job records and job stdout/stderr here.
POMS_LOCAL_BATCH_ROOT = Path(env_str("POMS_LOCAL_BATCH_ROOT", str(VAR_DIR / "local_batch")))
# Job stdout/stderr (Slurm and other batch systems that leave it on this host) is served from
# files under these directories only (colon-separated; `{experiment}` stands for the job's
# experiment): a job may name any path as its output, and the pages must not become a way to read
# this host's files or another experiment's. Local batch jobs read only their own cluster's files.
POMS_JOB_OUTPUT_ROOTS = [
    p for p in env_str("POMS_JOB_OUTPUT_ROOTS", str(VAR_DIR / "job-output" / "{experiment}")).split(":") if p
]
# Slurm: the jobcomp/filetxt log slurmctld writes (scripts/slurm.py puts it here), the command
# timeout, and the zone slurmctld writes that log's times in (empty: this host's /etc/localtime).
POMS_SLURM_JOBCOMP_LOG = Path(env_str("POMS_SLURM_JOBCOMP_LOG", str(VAR_DIR / "slurm" / "jobcomp.log")))
POMS_SLURM_TIMEOUT = env_int("POMS_SLURM_TIMEOUT", 30)
POMS_SLURM_TIME_ZONE = env_str("POMS_SLURM_TIME_ZONE", "")
# jobsub_lite: the group (-G) and role of the POMS launches and polls, and the command timeout.
POMS_JOBSUB_GROUP = env_str("POMS_JOBSUB_GROUP", "")
POMS_JOBSUB_ROLE = env_str("POMS_JOBSUB_ROLE", "")
POMS_JOBSUB_TIMEOUT = env_int("POMS_JOBSUB_TIMEOUT", 120)
POMS_URL = env_str("POMS_URL", "http://127.0.0.1:8000")
POMS_POLL_INTERVAL = env_int("POMS_POLL_INTERVAL", 60)
# Job rows a poll worker keeps in memory to compare the next poll with (~0.5 kB each; 0 = none):
# past this, the least recently polled submissions are read back from the database.
POMS_POLL_MIRROR_JOBS = env_int("POMS_POLL_MIRROR_JOBS", 500_000)
POMS_LAUNCH_RUN_TIMEOUT = env_int("POMS_LAUNCH_RUN_TIMEOUT", 600)
# A submission still New with no job id this long after launch becomes LaunchFailed (POMS: 4 h).
POMS_LAUNCH_FAILED_AFTER = env_int("POMS_LAUNCH_FAILED_AFTER", 4 * 3600)
POMS_PAGE_SIZE = env_int("POMS_PAGE_SIZE", 50)
# Data handling backend for campaigns that do not choose one: "catalog" (built in) or "samweb".
POMS_DATA_HANDLER = env_str("POMS_DATA_HANDLER", "catalog")
# SAM web service of the samweb backend: base URL ("web" in the host becomes the experiment),
# the client certificate for writes, TLS verification (true/false or a CA bundle path).
POMS_SAM_BASE = env_str("POMS_SAM_BASE", "https://samweb.fnal.gov:8483")
POMS_SAM_CERT = env_str("POMS_SAM_CERT") or None
POMS_SAM_KEY = env_str("POMS_SAM_KEY") or None
_sam_verify = env_str("POMS_SAM_VERIFY", "true")
POMS_SAM_VERIFY = {"true": True, "false": False}.get(_sam_verify.lower(), _sam_verify)
# The global switch for automatic recovery and dependent launches (POMS launch_recovery_jobs).
POMS_LAUNCH_FOLLOWUPS = env_bool("POMS_LAUNCH_FOLLOWUPS", True)
# A Completed submission whose outputs are not located after this long is Located anyway (flagged).
POMS_LOCATED_TIMEOUT = env_int("POMS_LOCATED_TIMEOUT", 2 * 86400)
POMS_WRAPUP_INTERVAL = env_int("POMS_WRAPUP_INTERVAL", 60)
# Extra ssh options for the ssh runner, e.g. "-i /etc/poms/id_ed25519 -o UserKnownHostsFile=/etc/poms/known_hosts".
POMS_SSH_OPTIONS = shlex.split(env_str("POMS_SSH_OPTIONS", ""))
POMS_SSH_CONNECT_TIMEOUT = env_int("POMS_SSH_CONNECT_TIMEOUT", 20)

# --- Celery -------------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = POMS_LAUNCH_RUN_TIMEOUT + 120
CELERY_TASK_SOFT_TIME_LIMIT = POMS_LAUNCH_RUN_TIMEOUT + 60
# All three visibility timeouts must agree (Celery Redis caveats).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "poll-batch-systems": {
        "task": "launches.tasks.poll_batch_systems",
        "schedule": POMS_POLL_INTERVAL,
        # Missed ticks must not pile up behind a stalled worker.
        "options": {"expires": POMS_POLL_INTERVAL},
    },
    "wrapup": {
        "task": "launches.tasks.wrapup",
        "schedule": POMS_WRAPUP_INTERVAL,
        "options": {"expires": POMS_WRAPUP_INTERVAL},
    },
    "mark-failed-launches": {
        "task": "launches.tasks.mark_failed_launches",
        "schedule": 600,
        "options": {"expires": 600},
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Polls go to their own queue, served by one single-process worker: that process keeps the job
# rows it wrote in memory and compares the next poll with them (submissions/ingest.py Mirror).
CELERY_TASK_ROUTES = {"launches.tasks.poll_batch_systems": {"queue": "poll"}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("POMS_LOG_LEVEL", "INFO")},
}
