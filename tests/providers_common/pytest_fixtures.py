"""pytest fixtures of the provider tests; import them into a conftest."""

from __future__ import annotations

import pytest
import trio

from .loopback import LoopbackServer

__all__ = ["loopback"]


@pytest.fixture
async def loopback(nursery: trio.Nursery) -> LoopbackServer:
    """A loopback HTTP server in the test's nursery; set ``server.handler`` to script it."""
    server = LoopbackServer()
    await nursery.start(server.serve)
    return server
