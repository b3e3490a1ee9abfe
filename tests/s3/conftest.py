"""An S3 server for the tests: moto's ThreadedMotoServer on 127.0.0.1, a fresh bucket per test."""

from __future__ import annotations

import functools
import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.s3.responses import S3Response
from moto.server import ThreadedMotoServer

from harness_kernel_s3 import S3Options, S3Storage, build


def _atomically(method: Callable[..., Any], lock: threading.Lock) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(self, *args, **kwargs)

    return locked


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The URL of a moto S3 server on a free loopback port, for the whole test session.

    moto (5.2) honours ``If-None-Match: *`` and ``If-Match`` on PutObject, but checks the
    condition and then writes without a lock, while its server handles requests on many
    threads; S3 itself decides a conditional write atomically. So PutObject and
    DeleteObject are serialised here: the tests then exercise this storage's fencing
    against the semantics S3 documents rather than a race inside the test server.
    """
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    lock = threading.Lock()
    with pytest.MonkeyPatch.context() as patch:
        for name in ("put_object", "delete_object"):
            patch.setattr(S3Response, name, _atomically(getattr(S3Response, name), lock))
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials through the standard chain (environment), nothing from the real machine."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


@pytest.fixture
def bucket(moto_endpoint: str, aws_environment: None) -> str:
    """A new, empty bucket."""
    name = f"hk-test-{secrets.token_hex(6)}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_options(moto_endpoint: str, bucket: str) -> dict[str, Any]:
    """Plugin options pointing at the test bucket (fast retries)."""
    return {"bucket": bucket, "endpoint_url": moto_endpoint, "region": "us-east-1", "base_delay_ms": 10}


@pytest.fixture
def make_s3(s3_options: dict[str, Any]) -> Callable[..., S3Storage]:
    """Build an ``S3Storage`` from the test options, overridden by keyword arguments."""

    def make(**overrides: Any) -> S3Storage:
        return build(S3Options(**{**s3_options, **overrides}))

    return make
