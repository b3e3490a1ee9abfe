"""A real ``harness-kernel serve`` process on 127.0.0.1, started from a config file in
the test's temp dir, and httpx clients with the keys that config names."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

HERE = Path(__file__).parent
LISTENING = re.compile(r"harness-kernel serving on (http://127\.0\.0\.1:\d+)")
TIMEOUT = 60.0  # guards against a hanging server, not a speed assertion

KEYS = {
    "alice": "key-alice-acme-0001",
    "carol": "key-carol-acme-0002",
    "bob": "key-bob-globex-0003",
    "admin": "key-admin-0004",
    "revoked": "key-revoked-0005",
    "limited": "key-limited-0006",
    "from_env": "key-from-env-0007",
}


def digest(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


SERVER_TABLE = f"""
[server]
max_body_bytes = 4096
access_log = true
cors_origins = ["https://app.example"]
rate_limit = 100000
shutdown_timeout = 2.0

[[server.keys]]
principal = "alice"
tenant = "acme"
hash = "{digest(KEYS["alice"])}"

[[server.keys]]
principal = "carol"
tenant = "acme"
hash = "{digest(KEYS["carol"])}"
scope_principal = true

[[server.keys]]
principal = "bob"
tenant = "globex"
hash = "{digest(KEYS["bob"])}"

[[server.keys]]
principal = "root"
admin = true
hash = "{digest(KEYS["admin"])}"

[[server.keys]]
principal = "mallory"
tenant = "acme"
hash = "{digest(KEYS["revoked"])}"
revoked = true

[[server.keys]]
principal = "flooder"
tenant = "acme"
hash = "{digest(KEYS["limited"])}"
rate_limit = 5

[[server.keys]]
principal = "ops"
tenant = "acme"
env = "SHOP_SERVICE_KEY"
"""


def write_config(
    folder: Path, *, server_table: str = SERVER_TABLE, db: Path | None = None, storage: str | None = None
) -> Path:
    """harness.toml for the shop agent in ``folder``: sqlite at ``db`` (default: in the
    folder) unless ``storage`` gives the whole storage table as an inline TOML table."""
    shutil.copy(HERE / "shop_agent.py", folder / "shop_agent.py")
    database = db or folder / "shop.db"
    storage = storage or f"{{ plugin = \"sqlite\", options = {{ path = {json.dumps(str(database))} }} }}"
    config = folder / "harness.toml"
    config.write_text(
        f"""agent = "shop_agent:agent"
default_model = "shop/shop"
storage = {storage}

[[plugins]]
module = "shop_agent"

[[providers]]
plugin = "shop"
{server_table}""",
        encoding="utf-8",
    )
    return config


class Server:
    """One ``harness-kernel serve`` process; ``logs`` holds everything it printed."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.env = env or {}
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.logs = ""
        self._reader: threading.Thread | None = None
        self._clients: list[httpx.Client] = []
        self._logged = threading.Condition()

    def start(self) -> Server:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "SHOP_SERVICE_KEY": KEYS["from_env"], **self.env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "harness_kernel.cli", "serve", "--config", str(self.config),
             "--host", "127.0.0.1", "--port", "0"],
            cwd=self.config.parent, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:  # ends if the server dies before listening
            self.logs += line
            found = LISTENING.search(line)
            if found:
                self.url = found.group(1)
                self._reader = threading.Thread(target=self._read, daemon=True)
                self._reader.start()
                return self
        self.process.wait(timeout=TIMEOUT)
        self._close()
        raise AssertionError(f"the server did not start:\n{self.logs}")

    def _read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._logged:
                self.logs += line
                self._logged.notify_all()

    def wait_for_log(self, text: str) -> bool:
        """Whether the server logs ``text`` (waiting for its log reader, bounded)."""
        with self._logged:
            return self._logged.wait_for(lambda: text in self.logs, timeout=TIMEOUT)

    def stop(self) -> int:
        """SIGTERM, as an orchestrator would; the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=TIMEOUT)
        if self._reader is not None:
            self._reader.join(timeout=TIMEOUT)
        self._close()
        return code

    def _close(self) -> None:
        assert self.process is not None
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def kill(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=TIMEOUT)
            if self._reader is not None:
                self._reader.join(timeout=TIMEOUT)
            self._close()

    def client(self, who: str | None = "alice", **kwargs: Any) -> httpx.Client:
        headers = {"authorization": f"Bearer {KEYS[who]}"} if who else {}
        client = httpx.Client(base_url=self.url, timeout=TIMEOUT, headers=headers, **kwargs)
        self._clients.append(client)  # closed with the server
        return client


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One service for a module's tests (each test uses its own sessions)."""
    running = Server(write_config(tmp_path_factory.mktemp("service"))).start()
    try:
        yield running
    finally:
        running.kill()


def sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The server-sent events of ``response``: id (or None), event and data each."""
    current: dict[str, Any] = {"id": None, "event": "message", "data": []}
    for line in response.iter_lines():
        if line == "":
            if current["data"]:
                yield {"id": current["id"], "event": current["event"], "data": json.loads("\n".join(current["data"]))}
            current = {"id": None, "event": "message", "data": []}
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                current["data"].append(value)
            elif field in ("id", "event"):
                current[field] = value
