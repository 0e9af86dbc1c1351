from django.apps import AppConfig


class JobwireConfig(AppConfig):
    name = "jobwire.integrations.django"
    label = "jobwire"  # the default, "django", would read as Django's own
    verbose_name = "jobwire"
