"""Messages between replicas: events for a user's sockets, and control requests (cancel).

Without Redis there is one process and delivery is a direct call. With Redis every replica
publishes to, and listens on, two pub/sub channels; a replica delivers each message to the
handlers registered locally (its own sockets, its own generations). Pub/sub is fire-and-forget
by design: these are notifications (a turn finished elsewhere, stop that generation), and the
data they point at is in the database or in the stream log, so a missed one loses nothing.
When Redis is unreachable the listener retries with backoff and local delivery goes on.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

UserEventHandler = Callable[[uuid.UUID, str, dict[str, Any]], Awaitable[None]]
ControlHandler = Callable[[dict[str, Any]], Awaitable[None]]

RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0)


class EventBus:
    def __init__(self, redis: Redis | None = None, key_prefix: str = "mongars") -> None:
        self._redis = redis
        self._user_channel = f"{key_prefix}:user-events"
        self._control_channel = f"{key_prefix}:control"
        self._user_handlers: list[UserEventHandler] = []
        self._control_handlers: list[ControlHandler] = []
        self.connected = redis is None

    @property
    def shared(self) -> bool:
        return self._redis is not None

    def on_user_event(self, handler: UserEventHandler) -> None:
        self._user_handlers.append(handler)

    def on_control(self, handler: ControlHandler) -> None:
        self._control_handlers.append(handler)

    async def publish_user_event(
        self, user_id: uuid.UUID, type_: str, data: dict[str, Any]
    ) -> None:
        if self._redis is None:
            await self._deliver_user_event(user_id, type_, data)
            return
        payload = json.dumps({"user_id": str(user_id), "type": type_, "data": data})
        try:
            await self._redis.publish(self._user_channel, payload)
        except RedisError:
            # Degraded: other replicas miss it, this one must not.
            logger.warning("user event not shared (Redis unavailable); delivered locally only")
            await self._deliver_user_event(user_id, type_, data)

    async def publish_control(self, message: dict[str, Any]) -> None:
        if self._redis is None:
            await self._deliver_control(message)
            return
        try:
            await self._redis.publish(self._control_channel, json.dumps(message))
        except RedisError:
            logger.warning("control message not shared (Redis unavailable); applied locally only")
            await self._deliver_control(message)

    async def run(self) -> None:
        """Listen on Redis until cancelled, reconnecting after failures (no-op without Redis)."""
        if self._redis is None:
            return
        failures = 0
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._user_channel, self._control_channel)
                    self.connected, failures = True, 0
                    async for message in pubsub.listen():
                        await self._dispatch(message)
            except (RedisError, OSError) as exc:
                self.connected = False
                delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
                failures += 1
                logger.warning("event bus lost Redis (%s); retrying in %.1f s", exc, delay)
                await anyio.sleep(delay)

    async def _dispatch(self, message: dict[str, Any]) -> None:
        try:
            payload = json.loads(message["data"])
            channel = message["channel"].decode()
            if channel == self._user_channel:
                await self._deliver_user_event(
                    uuid.UUID(payload["user_id"]), payload["type"], payload["data"]
                )
            elif channel == self._control_channel:
                await self._deliver_control(payload)
        except (ValueError, KeyError, TypeError, AttributeError):
            logger.warning("ignored a malformed bus message")

    async def _deliver_user_event(
        self, user_id: uuid.UUID, type_: str, data: dict[str, Any]
    ) -> None:
        for handler in self._user_handlers:
            try:
                await handler(user_id, type_, data)
            except Exception:
                logger.exception("user event handler failed")

    async def _deliver_control(self, message: dict[str, Any]) -> None:
        for handler in self._control_handlers:
            try:
                await handler(message)
            except Exception:
                logger.exception("control handler failed")
