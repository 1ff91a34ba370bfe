"""Slow and oversized requests: dropped after a timeout or refused over a size, while the
server keeps answering everyone else.

uvicorn (h11) times a connection out only while it is idle *between* requests
(``timeout_keep_alive``): a client that opens a connection and sends its request headers a
byte at a time, or its body never (slowloris, slow POST), would hold the connection for
ever. So, with one ``timeout_s`` for both:

- :class:`HeaderTimeoutProtocol`, uvicorn's h11 protocol with a deadline: a connection whose
  request line and headers are not complete ``timeout_s`` after it opened (or after the first
  byte of its next request) is closed (nothing can be answered: there is no request yet);
- :class:`RequestLimits`, ASGI middleware: a body not complete ``timeout_s`` after its
  headers is answered 408 and its connection closed; request headers over
  ``max_header_bytes`` are answered 431 (uvicorn itself answers 400 to headers that arrive in
  pieces over h11's 16 KiB buffer: either way a status, and the memory they take is bounded).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request headers take over ``header_timeout_s``."""

    def __init__(self, *args: Any, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # part of a request line or headers, not all
            if self._header_deadline is None:
                self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._drop)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _drop(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
            self.logger.warning("dropped %s: its request headers did not arrive within %g s", client, self.header_timeout_s)
            self.transport.close()


class RequestLimits:
    """ASGI middleware: 431 for request headers over ``max_header_bytes``; 408 for a body that
    is not complete ``timeout_s`` after its headers (the connection is then closed)."""

    def __init__(self, app: ASGIApp, *, timeout_s: float, max_header_bytes: int) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        size = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
        if size > self.max_header_bytes:
            error = (f"request headers of {size:,} bytes are over the server's limit of {self.max_header_bytes:,} bytes")
            await JSONResponse({"error": error}, status_code=431, headers={"Connection": "close"})(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:  # afterwards the app only listens for a disconnect
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:  # (TimeoutError itself from Python 3.11)
                raise HTTPException(408, f"the request body did not arrive within {self.timeout_s:g} s (--request-timeout)",
                                    headers={"Connection": "close"}) from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, timed_receive, send)
