import os

from celery import Celery
from django.conf import settings

from jobwire.integrations import celery as jobwire_celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Both processes publish straight into the Redis jobwire shares: the web process `queued`
# when a view sends a task, the worker the rest.
integration = jobwire_celery.install(app, redis_url=settings.REDIS_URL)
