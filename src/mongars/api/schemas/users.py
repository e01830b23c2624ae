from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from mongars.api.schemas.common import LoginPassword, NewPassword, Username


class RegisterRequest(BaseModel):
    username: Username
    password: NewPassword


class PasswordChangeRequest(BaseModel):
    # The charter's field names, so its clients keep working.
    old_password: LoginPassword
    new_password: NewPassword


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    is_admin: bool
    is_disabled: bool
    created_at: datetime
    last_login_at: datetime | None


class UserPage(BaseModel):
    items: list[UserOut]
    total: int
    limit: int
    offset: int


class UserListResponse(BaseModel):
    """The charter's shape for GET /api/v1/user/list."""

    users: list[str]


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    disabled: bool | None = Field(default=None, description="Disable or re-enable the account.")
    is_admin: bool | None = Field(default=None, description="Grant or remove admin rights.")
