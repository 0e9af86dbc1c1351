"""The Django project of the celery-progress comparison, laid out as Celery's Django guide
says: the Celery app lives in `benchsite/celery.py` and is loaded with Django, so that
`AsyncResult` in celery-progress's view finds its result backend."""

from .celery import app as celery_app

__all__ = ("celery_app",)
