from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from mongars.api.schemas.common import LoginName, LoginPassword
from mongars.core.accounts import TokenPair


class LoginRequest(BaseModel):
    username: LoginName
    password: LoginPassword


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=512)


class TokenResponse(BaseModel):
    """OAuth2 token response (RFC 6749 section 5.1) plus the refresh token's lifetime."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str
    refresh_expires_in: int = Field(description="Seconds until the login session expires.")

    @classmethod
    def from_pair(cls, pair: TokenPair) -> TokenResponse:
        return cls(
            access_token=pair.access_token,
            expires_in=pair.expires_in,
            refresh_token=pair.refresh_token,
            refresh_expires_in=pair.refresh_expires_in,
        )
