"""Settings of the benchmark's Django project: `startproject`'s defaults (apps and middleware,
so every request pays what a real project's would), DEBUG off, plus celery-progress and the
crawler app. The Redis URLs come from the environment the runner gives each process."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Only ever served on loopback for the length of one run.
SECRET_KEY = "benchmark-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "celery_progress",
    "crawler",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "benchsite.urls"
# The progress view reads no table; the database exists because the default apps expect one.
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": str(Path(tempfile.gettempdir()) / "celery-progress-bench.db")}}
STATIC_URL = "static/"
USE_TZ = True

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/1")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
