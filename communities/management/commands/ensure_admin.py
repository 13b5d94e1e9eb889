from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser

from automation.commands import OperatorCommand, check_argument_text


class Command(OperatorCommand):
    help = "Create (or reset the password of) an admin login; used by scripts/run."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", required=True)
        parser.add_argument("--email", default="admin@localhost")

    def handle(self, *args: Any, username: str, password: str, email: str,
               **options: Any) -> None:
        user_model = get_user_model()
        # The model fields' own rules (characters, length, address form), checked here
        # because get_or_create and save do not run validators.
        for option, name, value in (("--username", "username", username),
                                    ("--email", "email", email)):
            check_argument_text(value, option)
            try:
                user_model._meta.get_field(name).clean(value, None)
            except ValidationError as exc:
                raise CommandError(f"{option}: {' '.join(exc.messages)}") from None
        check_argument_text(password, "--password")
        if len(password) < 8:
            raise CommandError("--password must have at least 8 characters")
        user, created = user_model.objects.get_or_create(
            username=username, defaults={"email": email}
        )
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        self.stdout.write(f"{'created' if created else 'updated'} admin login {username!r}")
