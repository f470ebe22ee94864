"""A deadline on the request head, so a slow client cannot hold a socket open for as long as it likes.

uvicorn only limits the idle time between requests (``timeout_keep_alive``). A client that sends
half a request line or half its headers, or one byte a second, kept its socket (and a file
descriptor, a buffer, a slot) for as long as it liked: 75 s and more in issue 18 #12.
:func:`deadline_protocol` subclasses uvicorn's HTTP protocol: the request head (request line and
headers) must be complete within ``header_timeout`` seconds of the connection opening or of the
first byte of the next request on a kept-alive connection. Bytes that trickle in do not extend it.
On expiry the connection is closed, with a 408 when part of a request came (a connection that
never sent a byte is closed silently, as browsers' speculative connections expect). A head longer
than ``max_header_bytes`` is refused with 431 and the connection closed: the httptools parser
buffers a header of any length (an 80 MiB header was read and answered 200).

The body has its own deadline in :class:`tlsdetect.serve.middleware.BodyLimit`, which reads it
(a 408 JSON answer there); a body the app never reads (a GET with one) runs into this deadline
once the answer is sent, since the connection is then waiting for the next head.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

__all__ = ["TIMEOUT_ANSWER", "TOO_LARGE_ANSWER", "deadline_protocol", "server_config"]

def _answer(status: bytes, code: str, detail: str) -> bytes:
    """A whole HTTP answer with the API's JSON error body, written before any app runs."""
    body = json.dumps({"error": code, "detail": detail}).encode()
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


TIMEOUT_ANSWER = _answer(b"408 Request Timeout", "request_timeout", "the request head did not arrive in time")
TOO_LARGE_ANSWER = _answer(b"431 Request Header Fields Too Large", "request_head_too_large",
                           "the request line and headers are over the server's limit")


def deadline_protocol(base: type[asyncio.Protocol], header_timeout: float,
                      on_timeout: Callable[[], None] | None = None, max_header_bytes: int = 65_536,
                      on_too_large: Callable[[], None] | None = None) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class ``base`` (``H11Protocol`` or ``HttpToolsProtocol``: both keep the
    request being answered in ``self.cycle``, a new object once a head has been parsed) with a deadline of
    ``header_timeout`` seconds and a limit of ``max_header_bytes`` on every request head; ``on_timeout`` and
    ``on_too_large`` are called for each connection closed for either."""
    if header_timeout <= 0 or max_header_bytes <= 0:
        raise ValueError("header_timeout and max_header_bytes must be positive")

    class HeadDeadline(base):  # type: ignore[valid-type,misc]
        _deadline: asyncio.TimerHandle | None = None
        _waiting_after: Any = None  # the cycle current when the deadline was set: a new one means the head came
        _bytes_seen = 0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._idle() and (self._deadline is None or self._waiting_after is not self.cycle):
                self._arm()  # the first bytes of a new request on a kept-alive connection
            self._bytes_seen += len(data)
            super().data_received(data)
            if (self._bytes_seen > max_header_bytes and self.cycle is self._waiting_after and self._idle()
                    and not self.transport.is_closing()):  # fed, and still no whole head
                self._disarm()
                self.transport.write(TOO_LARGE_ANSWER)
                self.transport.close()
                if on_too_large is not None:
                    on_too_large()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _idle(self) -> bool:
            cycle = self.cycle
            return cycle is None or bool(cycle.response_complete)

        def _arm(self) -> None:
            self._disarm()
            self._waiting_after = self.cycle
            self._bytes_seen = 0
            self._deadline = self.loop.call_later(header_timeout, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if self.cycle is not self._waiting_after or not self._idle():
                return  # the head came in time (a request is being answered, or was)
            if self.transport.is_closing():
                return
            if self._bytes_seen:
                self.transport.write(TIMEOUT_ANSWER)
            self.transport.close()
            if on_timeout is not None:
                on_timeout()

    HeadDeadline.__name__ = HeadDeadline.__qualname__ = f"HeadDeadline{base.__name__}"
    return HeadDeadline


def server_config(app: Any, *, host: str, port: int, **options: Any) -> Any:
    """The ``uvicorn.Config`` that serves ``app`` (made by :func:`tlsdetect.serve.app.create_app`) with the head
    deadline and size limit of its settings (``header_timeout``, ``max_header_bytes``), counted in its metrics;
    ``options`` go to uvicorn as they are."""
    import uvicorn
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    settings = app.state.settings
    metrics = app.state.metrics
    protocol = deadline_protocol(AutoHTTPProtocol, settings.header_timeout, metrics.timeouts.labels("header").inc,
                                 settings.max_header_bytes, metrics.heads_rejected.inc)
    return uvicorn.Config(app, host=host, port=port, http=protocol, **options)
