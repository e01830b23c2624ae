"""Django's settings, derived from monGARS's ``Settings``.

Django keeps one settings object per process, while ``create_app(settings)`` may build many
apps (tests do): the first call configures Django and later calls reuse it. Everything that
differs per app (how to reach the API, whether registration is open) travels with each request
instead (``mongars_web.connector``), so apps built later are still served correctly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mongars.config import Settings
from mongars.core.security.secret_key import derive_key, load_master_secret

PACKAGE_DIR = Path(__file__).resolve().parent
SESSION_COOKIE_NAME = "mongars_session"
CSRF_COOKIE_NAME = "mongars_csrftoken"


def django_settings(settings: Settings) -> dict[str, Any]:
    # The server's master secret (generated in the data dir outside production, like the
    # API's), with a key of the UI's own derived from it: CSRF and session signatures can never
    # be confused with the API's tokens.
    secret_key = derive_key(load_master_secret(settings), "web-ui").hex()
    values: dict[str, Any] = {
        "DEBUG": False,
        # The API's own middleware (or `mongars web`'s checks) decide which Host is ours.
        "ALLOWED_HOSTS": ["*"],
        "SECRET_KEY": secret_key,
        "ROOT_URLCONF": "mongars_web.urls",
        "INSTALLED_APPS": ["django.contrib.messages", "mongars_web"],
        "MIDDLEWARE": [
            "mongars_web.middleware.page_headers",
            "django.middleware.common.CommonMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
            "mongars_web.middleware.ApiErrorPages",
        ],
        "TEMPLATES": [
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [],
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.template.context_processors.csrf",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        # No database: accounts and conversations live behind the API.
        "DATABASES": {},
        "USE_TZ": True,
        "TIME_ZONE": "UTC",
        "STATIC_URL": "/static/",
        "MESSAGE_STORAGE": "django.contrib.messages.storage.session.SessionStorage",
        # The session holds the API's tokens, so it lives on the server: the browser gets an
        # opaque id in an HttpOnly cookie, never the tokens (signed-cookie sessions would
        # hand them over).
        "SESSION_COOKIE_NAME": SESSION_COOKIE_NAME,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": settings.is_production,
        "SESSION_COOKIE_AGE": settings.auth.refresh_token_ttl_seconds,
        "SESSION_SERIALIZER": "django.contrib.sessions.serializers.JSONSerializer",
        "CSRF_COOKIE_NAME": CSRF_COOKIE_NAME,
        "CSRF_COOKIE_HTTPONLY": True,
        "CSRF_COOKIE_SAMESITE": "Lax",
        "CSRF_COOKIE_SECURE": settings.is_production,
        "CSRF_FAILURE_VIEW": "mongars_web.views.common.csrf_failure",
        # Behind a TLS proxy the page's origin (https://…) is not the one Django sees.
        "CSRF_TRUSTED_ORIGINS": list(settings.http.allowed_origins),
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
        "LOGGING_CONFIG": None,  # monGARS configures logging (mongars.observability.logs)
    }
    if settings.redis_url:
        # Several replicas share the sessions through the Redis they already share.
        values["SESSION_ENGINE"] = "django.contrib.sessions.backends.cache"
        values["CACHES"] = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": settings.redis_url,
                "KEY_PREFIX": f"{settings.redis_key_prefix}:web",
            }
        }
    else:
        session_dir = settings.data_dir / "web-sessions"
        session_dir.mkdir(parents=True, exist_ok=True)
        values["SESSION_ENGINE"] = "django.contrib.sessions.backends.file"
        values["SESSION_FILE_PATH"] = str(session_dir)
        values["CACHES"] = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    return values


def configure(settings: Settings) -> bool:
    """Configure Django from ``settings`` once per process; False if it already was."""
    import django
    from django.conf import settings as django_conf

    if django_conf.configured:
        return False
    django_conf.configure(**django_settings(settings))
    django.setup(set_prefix=False)
    return True
