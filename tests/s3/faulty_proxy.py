"""A loopback HTTP proxy in front of the S3 server that fails chosen requests.

A rule matches a method and a substring of the path, and answers ``status`` with an S3
error document either instead of forwarding (``lost="request"``) or after forwarding
(``lost="response"``: the server did the work, the client never hears of it).

The proxy can also make moto behave like the S3-compatible servers that do not keep
S3's promises (docs/storage/s3.md lists them): ``strip_request_headers`` drops
``If-None-Match``/``If-Match`` before forwarding, as a server that ignores them would;
``drop_etag`` removes the ``ETag`` from every answer; ``quoted_if_match_fails`` answers
412 to an ``If-Match`` whose ETag is quoted, as Ceph RGW 16 does (it compares with the
unquoted ETag; moto accepts both forms, so unquoted ones are forwarded as they are).
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import attrs


@attrs.define
class Fault:
    method: str
    path_contains: str
    times: int
    status: int = 503
    code: str = "SlowDown"
    lost: str = "request"  # or "response"


@attrs.define
class FaultyProxy:
    upstream: str
    faults: list[Fault] = attrs.Factory(list)
    injected: list[tuple[str, str, int]] = attrs.Factory(list)
    strip_request_headers: frozenset[str] = frozenset()  # lower-case names
    drop_etag: bool = False
    quoted_if_match_fails: bool = False
    conditions_seen: list[tuple[str, str]] = attrs.Factory(list)  # (header, value) of If-* requests
    requests: list[tuple[str, str]] = attrs.Factory(list)  # (method, path) of every request
    url: str = ""
    _lock: threading.Lock = attrs.Factory(threading.Lock)

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            self.requests.append((method, path))
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.path_contains in path:
                    fault.times -= 1
                    self.injected.append((method, path, fault.status))
                    return fault
        return None

    def precondition_fault(self, headers: dict[str, str]) -> Fault | None:
        """A 412 for a quoted ``If-Match`` when emulating RGW; records every condition seen."""
        with self._lock:
            for name, value in headers.items():
                if name.lower() in ("if-match", "if-none-match"):
                    self.conditions_seen.append((name.lower(), value))
        tag = next((v for k, v in headers.items() if k.lower() == "if-match"), None)
        if self.quoted_if_match_fails and tag is not None and tag.startswith('"'):
            return Fault("PUT", "", times=0, status=412, code="PreconditionFailed")
        return None


def _handler(proxy: FaultyProxy) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(proxy.upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            forwarded = {k: v for k, v in self.headers.items() if k.lower() not in proxy.strip_request_headers}
            fault = proxy.take(self.command, self.path) or proxy.precondition_fault(forwarded)
            if fault is None or fault.lost == "response":
                conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=30)
                try:
                    conn.request(self.command, self.path, body=body, headers=forwarded)
                    response = conn.getresponse()
                    payload = response.read()
                    status, headers = response.status, response.getheaders()
                finally:
                    conn.close()
            if fault is not None:
                payload = (
                    f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{fault.code}</Code>'
                    f"<Message>injected</Message></Error>"
                ).encode()
                status, headers = fault.status, [("Content-Type", "application/xml")]
            head = self.command == "HEAD"
            self.send_response(status)
            for name, value in headers:
                skip = ("transfer-encoding", "connection", "date", "server", *(("etag",) if proxy.drop_etag else ()))
                if name.lower() not in skip and (head or name.lower() != "content-length"):
                    self.send_header(name, value)
            if not head:
                self.send_header("Content-Length", str(len(payload)))
            elif fault is not None:
                self.send_header("Content-Length", "0")
            self.end_headers()
            if not head:
                self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve

    return Handler


@contextmanager
def faulty_proxy(upstream: str, **behaviour: Any) -> Iterator[FaultyProxy]:
    """A proxy on 127.0.0.1 in front of ``upstream``; ``behaviour``: ``FaultyProxy`` fields."""
    proxy = FaultyProxy(upstream, **behaviour)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
