"""Django and jobwire in one ASGI application: /realtime/ is jobwire, the rest Django.

    uvicorn project.asgi:application
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from jobwire.integrations.django.asgi import get_asgi_application

application = get_asgi_application()
