# The Celery app loads with Django, so a view's `crawl.delay()` goes through jobwire's Celery
# signals (and reports `queued`) in the web process too.
from .celery import app as celery_app

__all__ = ["celery_app"]
