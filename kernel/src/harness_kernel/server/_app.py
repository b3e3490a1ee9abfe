"""The ASGI application and ``serve``: Starlette on Hypercorn's trio worker.

The store is opened from the config in the lifespan and closed after the last
request: runs this process drives are aborted first (their partial output recorded),
parked runs stay parked in storage for the next start.
"""

from __future__ import annotations

import ipaddress
import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from harness_kernel import HarnessConfig, open_store_from_config
from harness_kernel.errors import ConfigError, HarnessError

from ._auth import OPEN_PRINCIPAL, PRINCIPAL, Guard
from ._openapi import openapi_document
from ._page import PAGE_PATHS, page_routes
from ._problems import Problem, problem_response
from ._routes import ENDPOINTS, Call, Endpoint
from ._runs import Runs
from ._schema import SchemaSet, parse_body
from ._service import Service
from ._settings import ServerSettings, load_service_config

__all__ = ["create_app", "serve"]


def _route(endpoint: Endpoint, schemas: SchemaSet) -> Route:
    async def run(request: Request) -> Response:
        try:
            service: Service = request.state.service
            body: Any = None
            if endpoint.body is not None:
                raw = await request.body()
                try:
                    data = json.loads(raw) if raw.strip() else {}
                except ValueError:
                    raise Problem(400, "request.invalid_json", "the body is not JSON") from None
                body = parse_body(data, endpoint.body, schemas)
            principal = request.scope.get(PRINCIPAL, OPEN_PRINCIPAL)
            return await endpoint.handler(Call(request, service, principal, body))
        except (Problem, HarnessError) as exc:
            return problem_response(exc)

    return Route(endpoint.path, run, methods=[endpoint.method], name=endpoint.name)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "request.no_route", 405: "request.method_not_allowed"}
    code = codes.get(exc.status_code, "request.error")
    return problem_response(Problem(exc.status_code, code, str(exc.detail), headers=exc.headers))


async def _internal_error(request: Request, exc: Exception) -> Response:
    return problem_response(exc)


def create_app(config: HarnessConfig, settings: ServerSettings | None = None) -> Starlette:
    """The service for ``config`` as an ASGI application (the store opens in its
    lifespan, so serve it with a trio server: Hypercorn's trio worker)."""
    settings = settings or ServerSettings()
    schemas = SchemaSet()
    document = openapi_document(schemas)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with open_store_from_config(config) as store, trio.open_nursery() as nursery:
            service = Service(store, Runs(nursery), settings, document)
            app.state.service = service  # for serve's signal handler
            try:
                yield {"service": service}
            finally:
                service.stop()

    open_paths = PAGE_PATHS | {endpoint.path for endpoint in ENDPOINTS if endpoint.open}
    middleware = [Middleware(Guard, settings=settings, open_paths=open_paths)]
    if settings.cors_origins:
        middleware.insert(
            0,
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "PATCH", "DELETE"],
                allow_headers=["authorization", "x-api-key", "content-type", "last-event-id"],
                expose_headers=["harness-run-id"],
            ),
        )
    return Starlette(
        routes=[*page_routes(), *(_route(endpoint, schemas) for endpoint in ENDPOINTS)],
        middleware=middleware,
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        lifespan=lifespan,
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(config_path: str, *, host: str | None = None, port: int | None = None) -> int:
    """Run the service for the config file at ``config_path`` until SIGINT or SIGTERM.

    ``host`` and ``port`` override the ``[server]`` table. Without API keys the service
    only listens on a loopback address. Returns the exit code (0 after a clean stop).
    """
    config, settings = load_service_config(config_path)
    host = host or settings.host
    port = settings.port if port is None else port
    if not settings.keys and not _loopback(host):
        raise ConfigError(
            f"server: no [[server.keys]] configured, so the service only listens on a "
            f"loopback address, not {host}"
        )
    hypercorn = HypercornConfig()
    hypercorn.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    hypercorn.graceful_timeout = settings.shutdown_timeout
    # Hypercorn's default backlog (100) resets connections when hundreds of clients
    # connect at once (W13: 500 event streams); the kernel caps it at somaxconn.
    hypercorn.backlog = 2048
    # The access log names the client, the method and path (no query), the status, the
    # size and the time; no header is logged, and keys travel only in headers.
    hypercorn.accesslog = "-" if settings.access_log else None
    hypercorn.access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss'
    app = create_app(config, settings)
    try:
        trio.run(_run, app, hypercorn)
    except (OSError, ExceptionGroup) as exc:
        bind_error = _os_error(exc)  # the address is taken, or not ours to bind
        if bind_error is None:
            raise
        raise ConfigError(
            f"server: cannot listen on {host}:{port}: {bind_error.strerror or bind_error}"
        ) from None
    return 0


def _os_error(exc: BaseException) -> OSError | None:
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return _os_error(exc.exceptions[0])
    return None


async def _run(app: Starlette, hypercorn: HypercornConfig) -> None:
    stop = trio.Event()
    async with trio.open_nursery() as nursery:

        async def on_signal() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
                async for _ in received:
                    sys.stderr.write("harness-kernel: stopping\n")
                    # Not ready any more, and the runs this process drives end now
                    # (aborted, partial output recorded), so their streams close
                    # instead of holding the shutdown up until shutdown_timeout.
                    service: Service | None = getattr(app.state, "service", None)
                    if service is not None:
                        service.stop()
                    stop.set()

        async def run_server(task_status: trio.TaskStatus[list[str]]) -> None:
            # Starlette's ASGI types are looser than Hypercorn's.
            asgi: Any = app
            await hypercorn_serve(
                asgi, hypercorn, shutdown_trigger=stop.wait, task_status=task_status
            )
            nursery.cancel_scope.cancel()

        nursery.start_soon(on_signal)
        binds: list[str] = await nursery.start(partial(run_server))
        for bind in binds:
            sys.stderr.write(f"harness-kernel serving on {bind}\n")
        sys.stderr.flush()
