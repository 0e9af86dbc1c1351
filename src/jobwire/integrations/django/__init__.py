"""jobwire for Django: live job status for the signed-in user, with Django's own sessions.

    INSTALLED_APPS = [..., "jobwire.integrations.django"]
    MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
                  "jobwire.integrations.django.middleware.CeleryOwnerMiddleware"]
    urlpatterns = [..., path("jobwire/", include("jobwire.integrations.django.urls"))]

    # asgi.py: jobwire at /realtime/, Django everywhere else, one process
    from jobwire.integrations.django.asgi import get_asgi_application
    application = get_asgi_application()

    {% load jobwire %}{% jobwire_script %}{% jobwire_progress job_id %}

- `urls`: `token/` mints a short-lived jobwire token for `request.user` (for code that talks
  to jobwire elsewhere, or with a token).
- `templatetags.jobwire`: the browser library and a live progress element for a job.
- `middleware.CeleryOwnerMiddleware`: a Celery task sent while handling a request belongs to
  `request.user` unless it names its owner.
- `asgi`: the router, and `auth.authenticate`, the hook that signs a jobwire connection in by
  the Django session cookie.

Settings are in `conf`. See docs/django.md.
"""
