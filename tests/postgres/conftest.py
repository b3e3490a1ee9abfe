"""A PostgreSQL server started for this test session, and a fresh schema per test.

The tests never use a server they did not start. Without PostgreSQL's server programs
the tests are skipped, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.postgres.cluster import Cluster, ClusterUnavailable


def _start() -> Cluster:
    try:
        cluster = Cluster()
    except ClusterUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and PostgreSQL is missing: {exc}")
        pytest.skip(str(exc))
    try:
        return cluster.init().start()
    except BaseException:
        cluster.remove()
        raise


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One throwaway server for the whole session."""
    cluster = _start()
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    """A server of this test alone (for tests that restart it)."""
    cluster = _start()
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def schema() -> str:
    return f"t_{secrets.token_hex(6)}"


@pytest.fixture
def pg_options(pg_cluster: Cluster, schema: str) -> dict[str, Any]:
    """Plugin options for a fresh schema on the session's server (fast retries)."""
    return {"dsn": pg_cluster.dsn, "schema": schema, "retry_base_delay_ms": 20}


@pytest.fixture
def spec(pg_options: dict[str, Any]) -> dict[str, Any]:
    return {"plugin": "postgres", "options": pg_options}
