"""``harness-kernel serve``: a ``harness.toml`` as an HTTP service.

REST and server-sent events under ``/v1`` (resumable event streams), an OpenAPI 3.1
document built from the routes, API keys mapped to principals and tenants. Starlette
on Hypercorn's trio worker, both from the ``server`` extra
(``harness-kernel[server]``); importing this package without them raises a
``HarnessError`` naming the extra. See docs/service.md.
"""

from __future__ import annotations

import importlib.util

from harness_kernel.errors import HarnessError


def _require_extra() -> None:
    missing = [
        name for name in ("starlette", "hypercorn") if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise HarnessError(
            f"harness-kernel serve needs the 'server' extra ({', '.join(missing)} not "
            "installed): install harness-kernel[server]"
        )


_require_extra()

from ._app import create_app, serve  # noqa: E402
from ._settings import ApiKey, ServerSettings, hash_key, load_service_config  # noqa: E402

__all__ = ["ApiKey", "ServerSettings", "create_app", "hash_key", "load_service_config", "serve"]
