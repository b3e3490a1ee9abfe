"""A small HTTP/1.1 server on 127.0.0.1 for provider tests, written on trio.

It runs in the test's own trio loop (so ``MockClock`` covers the server too), keeps
connections alive between requests like real API front ends, streams bodies with
chunked transfer encoding, and records what it saw: each request (method, path,
headers, body) and each connection, including the moment the client closed it. A
handler decides every response through an ``Exchange``: normal responses, slow
streams, a connection reset (RST) or a close in the middle of a body, or no answer at
all.
"""

from __future__ import annotations

import email.utils
import json
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any

import attrs
import trio

__all__ = ["Connection", "Exchange", "Handler", "LoopbackServer", "ReceivedRequest"]

_REASONS = {529: "Site Overloaded"}


@attrs.define
class ReceivedRequest:
    """One request as the server read it. Header names are lowercased."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    """``trio.current_time()`` when the request was complete (mock time under MockClock)."""
    connection: Connection

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@attrs.define(eq=False)
class Connection:
    """One accepted TCP connection. ``closed`` is set once the client went away."""

    number: int
    closed: trio.Event = attrs.Factory(trio.Event)
    requests: int = 0
    reset_by_server: bool = False


class _Gone(Exception):
    """The client closed the connection."""


class Exchange:
    """One request and the means to answer it, as a handler sees them."""

    def __init__(self, server: LoopbackServer, conn: Connection, stream: trio.SocketStream, request: ReceivedRequest) -> None:
        self.server = server
        self.connection = conn
        self.request = request
        self._stream = stream
        self._chunked = False
        self.finished = False
        self.aborted = False

    async def _send(self, data: bytes) -> None:
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _Gone from exc

    @staticmethod
    def _head(status: int, headers: Sequence[tuple[str, str]]) -> bytes:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = _REASONS.get(status, "Unknown")
        lines = [f"HTTP/1.1 {status} {reason}", f"date: {email.utils.formatdate(usegmt=True)}"]
        lines += [f"{name}: {value}" for name, value in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def start(self, status: int = 200, headers: Sequence[tuple[str, str]] = ()) -> None:
        """Send the status line and headers of a chunked (streamed) body."""
        self._chunked = True
        await self._send(self._head(status, [*headers, ("transfer-encoding", "chunked")]))

    async def write(self, data: bytes) -> None:
        """Send ``data`` as one HTTP chunk."""
        if data:
            await self._send(b"%x\r\n%s\r\n" % (len(data), data))

    async def end(self) -> None:
        """Finish a chunked body; the connection stays open for the next request."""
        await self._send(b"0\r\n\r\n")
        self.finished = True

    async def respond(self, status: int, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> None:
        """Send a whole response with a ``content-length``."""
        await self._send(self._head(status, [*headers, ("content-length", str(len(body)))]) + body)
        self.finished = True

    async def reset(self) -> None:
        """Abort the connection with a TCP reset (SO_LINGER 0), mid-response."""
        self.connection.reset_by_server = True
        self._stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.aborted = True
        await self._stream.aclose()

    async def close(self) -> None:
        """Close the connection (FIN) without finishing the response."""
        self.aborted = True
        await self._stream.aclose()

    async def hang(self) -> None:
        """Answer nothing; returns once the client closes the connection."""
        await self.connection.closed.wait()
        raise _Gone


Handler = Callable[[Exchange], Awaitable[None]]


async def _not_configured(exchange: Exchange) -> None:
    await exchange.respond(500, b'{"error": {"message": "no handler", "type": "server_error"}}')


class LoopbackServer:
    """Serve ``handler`` on 127.0.0.1; start it with ``await nursery.start(server.serve)``."""

    def __init__(self, handler: Handler = _not_configured) -> None:
        self.handler = handler
        self.requests: list[ReceivedRequest] = []
        self.connections: list[Connection] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def open_connections(self) -> list[Connection]:
        return [c for c in self.connections if not c.closed.is_set()]

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1", backlog=1024)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(self)
            try:
                while True:
                    stream = await listeners[0].accept()
                    nursery.start_soon(self._connection, stream)
            finally:
                for listener in listeners:
                    await listener.aclose()

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = Connection(len(self.connections) + 1)
        self.connections.append(conn)
        buffer = bytearray()
        try:
            while True:
                request = await self._read_request(stream, buffer, conn)
                if request is None:
                    break
                conn.requests += 1
                self.requests.append(request)
                exchange = Exchange(self, conn, stream, request)
                if not await self._answer(exchange, stream, buffer, conn):
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError, _Gone):
            pass
        finally:
            conn.closed.set()
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _answer(self, exchange: Exchange, stream: trio.SocketStream, buffer: bytearray, conn: Connection) -> bool:
        """Run the handler while watching for the client going away. True: keep serving."""
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                data = await _receive(stream)
                if data:
                    buffer.extend(data)  # a pipelined request: keep it for later
                    await trio.sleep_forever()
                conn.closed.set()
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            try:
                await self.handler(exchange)
            except _Gone:
                conn.closed.set()
            nursery.cancel_scope.cancel()
        return exchange.finished and not exchange.aborted and not conn.closed.is_set()

    async def _read_request(self, stream: trio.SocketStream, buffer: bytearray, conn: Connection) -> ReceivedRequest | None:
        while b"\r\n\r\n" not in buffer:
            data = await _receive(stream)
            if not data:
                return None
            buffer.extend(data)
        end = buffer.index(b"\r\n\r\n")
        head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        del buffer[: end + 4]
        method, path, _version = head[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", ""):
            raise NotImplementedError("chunked request bodies are not supported by the test server")
        length = int(headers.get("content-length", "0"))
        while len(buffer) < length:
            data = await _receive(stream)
            if not data:
                return None
            buffer.extend(data)
        body = bytes(buffer[:length])
        del buffer[:length]
        return ReceivedRequest(method, path, headers, body, trio.current_time(), conn)


async def _receive(stream: trio.SocketStream) -> bytes:
    try:
        return await stream.receive_some(65536)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return b""
