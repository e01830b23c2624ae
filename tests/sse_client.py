"""A small Server-Sent Events reader for tests (the parsing rules of the HTML standard)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Event:
    id: str
    type: str
    data: dict[str, Any]

    @property
    def seq(self) -> int:
        return int(self.id.rpartition(":")[2])


async def read_events(response: httpx.Response) -> AsyncIterator[Event]:
    fields: dict[str, list[str]] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields:
                yield Event(
                    id=fields.get("id", [""])[-1],
                    type=fields.get("event", ["message"])[-1],
                    data=json.loads("\n".join(fields["data"])),
                )
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value.removeprefix(" "))
