"""Per-request values readable anywhere in the call stack (logs, error envelopes)."""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("mongars_request_id", default=None)
