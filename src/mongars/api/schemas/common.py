from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from mongars.core.credentials_policy import check_password, normalize_username

Username = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    AfterValidator(normalize_username),
    Field(description="3-32 characters: letters, digits, '_', '.', '-'; case-insensitive."),
]
NewPassword = Annotated[
    str, AfterValidator(check_password), Field(description="8 to 128 characters.")
]


def is_unicode_text(value: str) -> bool:
    """False for a lone UTF-16 surrogate: valid in JSON ("\\ud800"), it is no character, and
    no database, tokenizer, model backend or response body can take it."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def unicode_text(value: str) -> str:
    # It used to fail as a 500 deep in a turn.
    if not is_unicode_text(value):
        raise ValueError("text must not contain lone surrogates (\\ud800-\\udfff)")
    return value


# Any text a turn stores or sends to a model.
Text = Annotated[str, AfterValidator(unicode_text)]

# Logins accept any string up to a sane size: an odd-looking username must get the same 401 as
# an unknown one, not a 422 that tells them apart.
LoginName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
LoginPassword = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
