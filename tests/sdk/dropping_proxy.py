"""A TCP proxy on loopback that cuts a connection mid-response, to test resume for real.

The SDKs talk to the live server through it. Armed with ``cut_after(marker, count)``, it lets
the server's bytes through until ``marker`` has passed ``count`` times on one connection, then
shuts that connection down (both ways), once. Everything else is forwarded untouched.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field


@dataclass
class _Rule:
    marker: bytes
    count: int


@dataclass
class DroppingProxy:
    upstream_port: int
    listener: socket.socket = field(init=False)
    cuts: int = 0
    _rule: _Rule | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sockets: list[socket.socket] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def cut_after(self, marker: bytes, count: int) -> None:
        with self._lock:
            self._rule = _Rule(marker, count)

    def serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # the listener was closed
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            connection = _Connection(self, client, upstream)
            threading.Thread(target=connection.pump_up, daemon=True).start()
            threading.Thread(target=connection.pump_down, daemon=True).start()

    def take_rule(self, marker_hits: dict[bytes, int]) -> bool:
        """True when this connection must be cut now (the rule is then spent)."""
        with self._lock:
            rule = self._rule
            if rule is None or marker_hits.get(rule.marker, 0) < rule.count:
                return False
            self._rule = None
            self.cuts += 1
            return True

    def close(self) -> None:
        # shutdown() wakes the accept() blocked in serve(); close() alone would not.
        with suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for sock in self._sockets:
            with suppress(OSError):
                sock.close()


@dataclass
class _Connection:
    proxy: DroppingProxy
    client: socket.socket
    upstream: socket.socket
    hits: dict[bytes, int] = field(default_factory=dict)

    def pump_up(self) -> None:
        self._pump(self.client, self.upstream, watch=False)

    def pump_down(self) -> None:
        self._pump(self.upstream, self.client, watch=True)

    def _pump(self, source: socket.socket, target: socket.socket, *, watch: bool) -> None:
        tail = b""
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
                if not watch:
                    continue
                rule = self.proxy._rule
                if rule is not None:
                    window = tail + chunk
                    self.hits[rule.marker] = (
                        self.hits.get(rule.marker, 0)
                        + window.count(rule.marker)
                        - tail.count(rule.marker)
                    )
                    tail = window[-len(rule.marker) :]
                    if self.proxy.take_rule(self.hits):
                        self._cut()
                        return
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _cut(self) -> None:
        for sock in (self.client, self.upstream):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with suppress(OSError):
                sock.close()


@contextmanager
def dropping_proxy(upstream_base_url: str) -> Iterator[DroppingProxy]:
    port = int(upstream_base_url.rsplit(":", 1)[1])
    proxy = DroppingProxy(upstream_port=port)
    proxy.listener = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=proxy.serve, name="dropping-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.close()
        thread.join(timeout=5)
