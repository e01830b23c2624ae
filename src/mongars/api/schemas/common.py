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
# Logins accept any string up to a sane size: an odd-looking username must get the same 401 as
# an unknown one, not a 422 that tells them apart.
LoginName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
LoginPassword = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
