"""Settings of the example. run.py passes the secrets, the database path and the Redis URL
in the environment."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "only-for-manage-py-without-run-py")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "jobwire.integrations.django",
    "crawler",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After AuthenticationMiddleware: a task a view sends belongs to request.user.
    "jobwire.integrations.django.middleware.CeleryOwnerMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "project.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                       "django.contrib.auth.context_processors.auth"]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("DJANGO_DB", BASE_DIR / "db.sqlite3")}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "index"
LOGOUT_REDIRECT_URL = "login"

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_IGNORE_RESULT = True  # the results reach the browser through jobwire
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# jobwire: the same secret and Redis in the web process (the router's jobwire) and,
# through REDIS_URL, the worker.
JOBWIRE_SECRET = os.environ.get("JOBWIRE_SECRET")
JOBWIRE_OPTIONS = {"redis_url": REDIS_URL}
JOBWIRE_TOKEN_TTL = 300

# How long the demo crawl takes: pages, and seconds per page.
CRAWL_PAGES = int(os.environ.get("CRAWL_PAGES", "20"))
CRAWL_DELAY = float(os.environ.get("CRAWL_DELAY", "0.3"))
