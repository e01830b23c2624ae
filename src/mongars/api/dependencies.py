"""What a route may ask for, as named types: ``db: DbSession``, ``user: CurrentUser``, ...

Every dependency is ``async def``, even those that only read an attribute: FastAPI runs a plain
``def`` dependency in a worker thread, a hand-off that costs more than the function itself.

The request is the unit of work: ``DbSession`` commits once the route function has returned and
before the response is sent (scope "function"), so nothing is acknowledged that is not stored;
it rolls back on any error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, cast

from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from mongars.config import Settings
from mongars.core.authentication import Principal, require_admin, require_login_session
from mongars.core.errors import MongarsError
from mongars.db.tables import User
from mongars.observability.http import note_user
from mongars.resources import Resources


def resources_of(connection: HTTPConnection) -> Resources:
    return cast(Resources, connection.state.resources)


async def get_resources(connection: HTTPConnection) -> Resources:
    return resources_of(connection)


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_settings(resources: ResourcesDep) -> Settings:
    return resources.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


# Reads the resources itself rather than naming ResourcesDep: FastAPI's solver walks every
# named sub-dependency on each request, and nearly every route depends on this one.
async def get_db_session(connection: HTTPConnection) -> AsyncIterator[AsyncSession]:
    async with resources_of(connection).sessions() as session:
        try:
            yield session
        except MongarsError as exc:
            if exc.keep_changes:
                await session.commit()
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            # Routes that committed themselves (a chat turn, before generating) leave nothing.
            if session.in_transaction():
                await session.commit()


DbSession = Annotated[AsyncSession, Depends(get_db_session, scope="function")]

# Declares the bearer scheme in OpenAPI (with /token for the docs' "Authorize" button); the
# credential may equally be an API key. auto_error=False: our own envelope says what is wrong.
_bearer = OAuth2PasswordBearer(tokenUrl="/token", auto_error=False)
Credential = Annotated[str | None, Depends(_bearer)]


async def authenticate(resources: Resources, db: AsyncSession, credential: str | None) -> Principal:
    principal = await resources.authenticator.authenticate(db, credential)
    note_user(principal.user.id)  # the access log's hashed user
    return principal


async def get_principal(
    credential: Credential, db: DbSession, connection: HTTPConnection
) -> Principal:
    return await authenticate(resources_of(connection), db, credential)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def get_current_user(principal: CurrentPrincipal) -> User:
    return principal.user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_session_user(principal: CurrentPrincipal) -> User:
    return require_login_session(principal).user


# The user, authenticated by a login session's access token (never an API key).
SessionUser = Annotated[User, Depends(get_session_user)]


async def get_admin_user(principal: CurrentPrincipal) -> User:
    return require_admin(principal).user


AdminUser = Annotated[User, Depends(get_admin_user)]
