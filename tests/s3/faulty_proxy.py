"""A loopback HTTP proxy in front of the S3 server that fails chosen requests.

A rule matches a method and a substring of the path, and answers ``status`` with an S3
error document either instead of forwarding (``lost="request"``) or after forwarding
(``lost="response"``: the server did the work, the client never hears of it).
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
    url: str = ""
    _lock: threading.Lock = attrs.Factory(threading.Lock)

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.path_contains in path:
                    fault.times -= 1
                    self.injected.append((method, path, fault.status))
                    return fault
        return None


def _handler(proxy: FaultyProxy) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(proxy.upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            fault = proxy.take(self.command, self.path)
            if fault is None or fault.lost == "response":
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                try:
                    conn.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
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
                skip = ("transfer-encoding", "connection", "date", "server")
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
def faulty_proxy(upstream: str) -> Iterator[FaultyProxy]:
    proxy = FaultyProxy(upstream)
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
