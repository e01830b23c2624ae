"""What a username and a password may look like. Shared by the API schemas and the CLI."""

from __future__ import annotations

import re

from mongars.core.security.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH

USERNAME_MIN_LENGTH = 3
USERNAME_MAX_LENGTH = 32
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def normalize_username(value: str) -> str:
    """Lower-cased and checked; raises ValueError with a sentence a person can act on."""
    username = value.strip().lower()
    if not USERNAME_MIN_LENGTH <= len(username) <= USERNAME_MAX_LENGTH:
        raise ValueError(
            f"username must be {USERNAME_MIN_LENGTH} to {USERNAME_MAX_LENGTH} characters long"
        )
    if not _USERNAME.match(username):
        raise ValueError(
            "username may contain only letters, digits, '_', '.' and '-', "
            "and must start with a letter or digit"
        )
    return username


def check_password(value: str) -> str:
    if not MIN_PASSWORD_LENGTH <= len(value) <= MAX_PASSWORD_LENGTH:
        raise ValueError(
            f"password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters long"
        )
    return value
