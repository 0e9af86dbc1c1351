"""The Celery app, configured from Django's settings (`CELERY_*`).

With `JOBWIRE_REDIS_URL` set (the jobwire runs) every task that names a `user_id` is also
reported to jobwire, straight into that Redis; without it (the celery-progress runs) jobwire
is not installed at all, so those runs carry none of its signal handlers."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")

app = Celery("benchsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

if os.environ.get("JOBWIRE_REDIS_URL"):
    from jobwire.integrations import celery as jobwire_celery

    jobwire_celery.install(app, redis_url=os.environ["JOBWIRE_REDIS_URL"])
