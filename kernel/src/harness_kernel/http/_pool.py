"""``ConnectionPool``: an HTTP/1.1 keep-alive pool that gives each request its own connection.

httpx's default pool (httpcore's ``AsyncConnectionPool``) re-plans every queued request
against every open connection each time a request starts or a response closes, and
offers one idle connection to every request that is waiting; all but one of them then
fail with ``ConnectionNotAvailable`` and plan again. With hundreds of streamed
responses in flight that bookkeeping is most of the client's time (W3 of ``make
bench``: 44% of a C=500 profile). This pool does the same job in constant time:

- at most ``max_connections`` requests are in flight; the others wait, first come first
  served, on a trio semaphore (a cancelled waiter just leaves the queue);
- a request takes the most recently used idle connection to its origin (a stack), or
  opens a new one; nobody else is ever offered that connection;
- a response read to its end puts its connection back on the stack (keep-alive); a
  response closed early closes its connection, as httpcore does;
- idle connections that expired (``keepalive_expiry``) or that the server closed are
  dropped when the stack is next used, and every open connection counts against
  ``max_connections``, idle or not.

Connections are httpcore's own ``AsyncHTTPConnection`` (connect, TLS, HTTP/1.1);
httpcore's errors are raised as the matching httpx exceptions.
"""

from __future__ import annotations

import collections
import contextlib
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterator

import httpcore
import httpx
import trio

__all__ = ["ConnectionPool"]

_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    # Most specific first: the first match wins.
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core, mapped in _ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc)) from exc
        raise


def _key(origin: httpcore.Origin) -> tuple[bytes, bytes, int]:
    return origin.scheme, origin.host, origin.port


class ConnectionPool(httpx.AsyncBaseTransport):
    """An ``httpx`` transport: HTTP/1.1 with keep-alive, at most ``max_connections`` at once.

    ``keepalive_expiry`` is how many seconds an idle connection is kept (``None``: until
    the server closes it). ``ssl_context`` defaults to httpx's (certifi roots, and
    ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set). A pool timeout in the request's
    ``timeout`` extension bounds the wait for a free slot (``httpx.PoolTimeout``).
    Call ``aclose`` once at the end; it closes every connection, idle or in use.
    """

    def __init__(
        self,
        *,
        max_connections: int,
        keepalive_expiry: float | None = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections!r}")
        self.max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._slots = trio.Semaphore(max_connections)
        # Keyed by (scheme, host, port): httpcore's Origin is not hashable.
        self._idle: dict[
            tuple[bytes, bytes, int], collections.deque[httpcore.AsyncHTTPConnection]
        ] = {}
        self._open: set[httpcore.AsyncHTTPConnection] = set()
        self._closed = False

    @property
    def in_flight(self) -> int:
        """Requests holding a connection now (their response not yet closed)."""
        return self.max_connections - self._slots.value

    @property
    def waiting(self) -> int:
        """Requests waiting for a free slot."""
        return self._slots.statistics().tasks_waiting

    @property
    def open_connections(self) -> int:
        """Open connections, idle or in use."""
        return len(self._open)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the connection pool is closed")
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        await self._acquire(request.extensions.get("timeout", {}).get("pool"))
        connection: httpcore.AsyncHTTPConnection | None = None
        try:
            connection = await self._checkout(core_request.url.origin)
            with _as_httpx_errors():
                response = await connection.handle_async_request(core_request)
        except BaseException:
            with trio.CancelScope(shield=True):
                if connection is not None:
                    await self._forget(connection)
            self._slots.release()
            raise
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(self, connection, core_request.url.origin, response.stream),
            extensions=response.extensions,
        )

    async def _acquire(self, timeout: float | None) -> None:
        if timeout is None:
            await self._slots.acquire()
            return
        with trio.move_on_after(timeout):
            await self._slots.acquire()
            return
        raise httpx.PoolTimeout(f"no connection was free within {timeout:g} s")

    async def _checkout(self, origin: httpcore.Origin) -> httpcore.AsyncHTTPConnection:
        """The freshest live idle connection to ``origin``, else a new one (unconnected:
        it connects when the request is sent). Holds a slot."""
        idle = self._idle.get(_key(origin))
        stale: list[httpcore.AsyncHTTPConnection] = []
        found: httpcore.AsyncHTTPConnection | None = None
        if idle:
            while idle and idle[0].has_expired():  # the oldest expire first
                stale.append(idle.popleft())
            while idle and found is None:
                candidate = idle.pop()
                if candidate.is_idle() and not candidate.has_expired():
                    found = candidate
                else:
                    stale.append(candidate)
        if found is None and len(self._open) - len(stale) >= self.max_connections:
            # Every slot but ours is in use or parked: make room by closing the oldest
            # idle connection to another origin (there is one, or we would not have a slot).
            for other in self._idle.values():
                if other:
                    stale.append(other.popleft())
                    break
        for connection in stale:
            await self._forget(connection)
        if found is not None:
            return found
        if self._ssl_context is None and origin.scheme == b"https":
            self._ssl_context = httpx.create_ssl_context()
        connection = httpcore.AsyncHTTPConnection(
            origin=origin, ssl_context=self._ssl_context, keepalive_expiry=self._keepalive_expiry
        )
        self._open.add(connection)
        return connection

    async def _forget(self, connection: httpcore.AsyncHTTPConnection) -> None:
        self._open.discard(connection)
        with trio.CancelScope(shield=True):
            await connection.aclose()

    async def _checkin(
        self, connection: httpcore.AsyncHTTPConnection, origin: httpcore.Origin
    ) -> None:
        """Back on the stack if its response was read whole; closed otherwise. Frees the slot."""
        try:
            if connection.is_idle() and not self._closed:
                self._idle.setdefault(_key(origin), collections.deque()).append(connection)
            else:
                await self._forget(connection)
        finally:
            self._slots.release()

    async def aclose(self) -> None:
        """Close every connection; later requests raise ``RuntimeError``."""
        self._closed = True
        self._idle.clear()
        connections, self._open = list(self._open), set()
        with trio.CancelScope(shield=True):
            for connection in connections:
                await connection.aclose()


class _Body(httpx.AsyncByteStream):
    """A response body that returns its connection to the pool when closed."""

    def __init__(
        self,
        pool: ConnectionPool,
        connection: httpcore.AsyncHTTPConnection,
        origin: httpcore.Origin,
        stream: AsyncIterable[bytes],
    ) -> None:
        self._pool = pool
        self._connection = connection
        self._origin = origin
        self._stream = stream
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            with trio.CancelScope(shield=True):
                aclose = getattr(self._stream, "aclose", None)
                if aclose is not None:
                    await aclose()  # marks the connection idle, or closes a half-read one
        finally:
            await self._pool._checkin(self._connection, self._origin)
