"""Every refusal (rate limit, login lockout, quota) is reported through ``RejectLog.record``:
one log line with the subject hashed, never raw, and one count per class and reason.

The counts are a plain ``Counter`` for now; the metrics issue exports them from here (this is
the single place to hook a Prometheus counter labelled by class and reason, both bounded).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections import Counter

logger = logging.getLogger("mongars.rejects")

# Bounded label values: the route classes and the reasons below, nothing caller-controlled.
REASONS = ("rate_limited", "login_locked", "quota_exceeded")


class SubjectHasher:
    """A keyed hash of who was refused (user id, client IP + username): stable enough to
    follow one client through the logs and the Redis keys, useless for recovering it."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __call__(self, subject: str) -> str:
        return hmac.new(self._key, subject.encode(), hashlib.sha256).hexdigest()[:24]


class RejectLog:
    def __init__(self, hasher: SubjectHasher) -> None:
        self.hash = hasher
        self.counts: Counter[tuple[str, str]] = Counter()
        # A chat turn's quota check may run on the database's thread (``database.commit_with``).
        self._counting = threading.Lock()

    def record(
        self, route_class: str, reason: str, subject: str, retry_after_seconds: float
    ) -> None:
        with self._counting:
            self.counts[(route_class, reason)] += 1
        logger.info(
            "refused class=%s reason=%s subject=%s retry_after=%.1fs",
            route_class,
            reason,
            self.hash(subject),
            retry_after_seconds,
        )
