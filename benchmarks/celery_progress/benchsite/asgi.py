"""Django's ASGI application, served by uvicorn in the benchmark."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")

application = get_asgi_application()
