from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

USERS = {"alice": "alice-jobwire", "bob": "bob-jobwire"}


class Command(BaseCommand):
    help = "Migrate the database and create (or reset) the demo users alice and bob."

    def handle(self, *args, **options):
        call_command("migrate", verbosity=0)  # in this process: one Django start-up, not two
        User = get_user_model()
        for name, password in USERS.items():
            user, _ = User.objects.get_or_create(username=name)
            user.set_password(password)
            user.save()
            self.stdout.write(f"{name} / {password}")
