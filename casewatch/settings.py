"""Django settings, all derived from the environment (see casewatch.config)."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from casewatch import config

DATA_DIR = config.ensure_data_dir()
SECRET_KEY = config.secret_key()
DEBUG = os.environ.get("CASEWATCH_DEBUG", "") == "1"
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("CASEWATCH_ALLOWED_HOSTS", "*").split(",")]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "casewatch.audit",
    "casewatch.accounts",
    "casewatch.cases",
    "casewatch.monitor",
    "casewatch.notify",
    "casewatch.api",
    # Only for its bundled Swagger UI files (served by WhiteNoise): no CDN at run time.
    "ninja",
    "django_htmx",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "axes",
    "csp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): whether this session passed the second sign-in step.
    "django_otp.middleware.OTPMiddleware",
    "casewatch.web.middleware.idle_sessions",
    "casewatch.web.middleware.member_language",
    "casewatch.web.middleware.member_time_zone",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "casewatch.web.middleware.htmx_login",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A header a view set itself (the portal's stricter policy) is left as it is.
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "casewatch.urls"
WSGI_APPLICATION = "casewatch.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [Path(__file__).resolve().parent / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "casewatch.web.context.sandbox_notice",
                "casewatch.web.context.staff",
                "casewatch.web.outbox.inbox_badge",
            ],
            "libraries": {"casewatch": "casewatch.web.tags"},
        },
    }
]

_database_url = os.environ.get("DATABASE_URL", "").strip()
if _database_url:
    DATABASES = {
        # Health checks: a connection kept between requests and tasks that the server
        # dropped (restart, pg_terminate_backend) is replaced before use, not failed on.
        "default": dj_database_url.parse(_database_url, conn_max_age=60, conn_health_checks=True)
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "casewatch.sqlite3"),
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous="
                + ("OFF;" if os.environ.get("CASEWATCH_SQLITE_THROWAWAY") == "1" else "NORMAL;"),
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Tests get their own in-memory database; WAL is for the real file.
    DATABASES["default"].setdefault("TEST", {"NAME": None})

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en"
# Each language is named in itself, so that anyone can find their own in the switcher.
LANGUAGES = [("en", "English"), ("es", "Español")]
USE_I18N = True
# Compiled catalogs ship in the package; nothing is compiled at run time.
LOCALE_PATHS = [Path(__file__).resolve().parent / "locale"]
USE_THOUSAND_SEPARATOR = True
TIME_ZONE = "UTC"
USE_TZ = True

# Background work: Huey on SQLite in the data directory, or on Redis when scaled out.
# The queue only carries ids; what must be done is always read from the database.
_redis_url = os.environ.get("CASEWATCH_REDIS_URL", "").strip()
HUEY: dict[str, object] = {
    "name": "casewatch",
    "immediate": False,
    "consumer": {"workers": 2, "worker_type": "thread", "periodic": True},
}
if _redis_url:
    HUEY.update({"huey_class": "huey.RedisHuey", "url": _redis_url})
else:
    HUEY.update({"huey_class": "huey.SqliteHuey", "filename": str(DATA_DIR / "queue.sqlite3")})

STATIC_URL = "static/"
# Served straight from the package by WhiteNoise's finders: no collectstatic step.
STATIC_ROOT = None
# casewatch/static is the project's own folder, not an app's: name it for the finders.
STATICFILES_DIRS = [Path(__file__).resolve().parent / "static"]
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = False

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# A session ends after this long unused; casewatch.web.middleware keeps a used one alive.
SESSION_COOKIE_AGE = config.session_idle_seconds()
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
# Argon2 for every new or changed password; a PBKDF2 hash from before is still accepted
# and re-hashed with Argon2 at that person's next login.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
]
# django-axes counts failed logins first and refuses a locked-out login before any
# password is checked (docs/security.md, "Signing in").
AUTHENTICATION_BACKENDS = [
    "casewatch.web.lockout.LoginThrottle",  # django-axes' AxesBackend
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = config.login_failure_limit()
AXES_COOLOFF_TIME = config.login_lockout()
# One login from one address: a wrong guess at someone's name locks out only that
# guesser, not the person at their own desk.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_CALLABLE = "casewatch.web.lockout.login_name"
AXES_LOCKOUT_CALLABLE = "casewatch.web.lockout.locked_out"
AXES_RESET_ON_SUCCESS = True
# A locked-out person who tries again is not kept out longer than the page told them.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# Logins are in the audit chain already; axes keeps only the failures it counts.
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False
OTP_TOTP_ISSUER = "casewatch"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
CASEWATCH_INVITATION_DAYS = config.invitation_days()
CASEWATCH_PUBLIC_URL = config.public_url()
# Requests one API token may make per minute before answers are 429 (docs/api.md).
CASEWATCH_API_RATE_PER_MINUTE = int(os.environ.get("CASEWATCH_API_RATE_PER_MINUTE", "600"))

# Headers for every page; the portal's own, stricter ones are kept where it sets them.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# The staff app loads its own stylesheets and htmx (a static file) and nothing inline.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
# Secure cookies, HSTS and a trusted origin for CSRF when staff reach casewatch over
# https; plain http on localhost (`casewatch up`) keeps working without them.
globals().update(config.transport_security(CASEWATCH_PUBLIC_URL))

_mail = config.mail_settings()
EMAIL_BACKEND = _mail.backend
DEFAULT_FROM_EMAIL = SERVER_EMAIL = _mail.from_address
if _mail.capture_dir is not None:
    EMAIL_FILE_PATH = str(_mail.capture_dir)
else:
    EMAIL_HOST, EMAIL_PORT = _mail.host, _mail.port
    EMAIL_HOST_USER, EMAIL_HOST_PASSWORD = _mail.username, _mail.password
    EMAIL_USE_TLS, EMAIL_USE_SSL = _mail.starttls, _mail.ssl
    EMAIL_TIMEOUT = 30

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "plain",
        }
    },
    "root": {"handlers": ["stderr"], "level": os.environ.get("CASEWATCH_LOG_LEVEL", "WARNING")},
}

# Bad input: an upload over CASEWATCH_MAX_UPLOAD_BYTES is dropped unread by
# casewatch.cases.uploads (the page says the limit and that nothing was imported); a
# request too big to read gets its 413 page from casewatch.web.uploads.bad_request
# (an API request its problem body from casewatch.api.problems).
CASEWATCH_MAX_UPLOAD_BYTES = config.upload_limit_bytes()
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440  # form fields and webhook bodies: 2.5 MB
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440  # a larger file waits in a temporary file
FILE_UPLOAD_HANDLERS = [
    "casewatch.cases.uploads.UploadLimit",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
