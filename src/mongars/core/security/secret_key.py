"""The server's master secret, and the per-purpose keys derived from it.

Outside production an unset ``MONGARS_SECRET_KEY`` is generated once and kept in the data
directory (mode 0600), so restarts and several workers agree on it. Production refuses to start
without an explicit one (see ``Settings``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from mongars.config import Settings

SECRET_FILE_NAME = "secret_key"  # noqa: S105 - a file name, not a secret


def load_master_secret(settings: Settings) -> bytes:
    if settings.secret_key is not None and settings.secret_key.get_secret_value():
        return settings.secret_key.get_secret_value().encode()
    if settings.is_production:  # Settings validation already refuses this; belt and braces.
        raise RuntimeError("MONGARS_SECRET_KEY is required in production")
    return _load_or_create(settings.data_dir / SECRET_FILE_NAME).encode()


def _load_or_create(path: Path) -> str:
    if path.exists():
        return _read(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write a private temporary file, then hard-link it into place: the link fails if another
    # worker won the race, and nobody ever reads a half-written file.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
        with contextlib.suppress(FileExistsError):  # another worker won the race
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> str:
    value = path.read_text().strip()
    if not value:
        raise RuntimeError(f"{path} is empty; delete it to generate a new secret")
    return value


def derive_key(master: bytes, purpose: str) -> bytes:
    """A separate key per use (JWT, API keys, refresh tokens, WS tickets).

    HMAC-SHA256 of the purpose under the master secret: a leak or a misuse of one key tells
    nothing about the others.
    """
    return hmac.new(master, f"mongars/{purpose}".encode(), hashlib.sha256).digest()
