"""The ``[server]`` table of ``harness.toml``: address, limits, CORS and API keys.

This module reads and validates the table itself with ``tomllib``. The kernel's
config resolver does not know ``[server]`` yet (it reports unknown top-level keys), so
while it refuses the table, ``load_config`` is handed the rest of the file: a copy
without ``[server]``, written next to the original (same directory, so relative
imports and ``${CONFIG_DIR}`` resolve the same) and removed once loaded. Once the
resolver accepts ``[server]``, the file is loaded as it is. Strings are interpolated as
everywhere else in the file.

::

    [server]
    host = "127.0.0.1"
    port = 8000
    max_body_bytes = 1048576     # 413 above this
    rate_limit = 600             # requests per minute and key (429 above it)
    shutdown_timeout = 5.0       # seconds open requests get when the server stops
    cors_origins = []            # origins allowed to call the API from a browser
    access_log = false           # one line per request on stderr (never a header)

    [[server.keys]]
    principal = "alice"
    tenant = "acme"              # sessions labelled tenant_id = "acme"
    hash = "sha256:<hex>"        # the key's SHA-256; or env = "VARIABLE" holding the key
    admin = false                # an admin key sees every tenant
    scope_principal = false      # also only sessions labelled principal = "alice"
    rate_limit = 60              # this key's own limit
    revoked = false
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from harness_kernel import HarnessConfig, load_config
from harness_kernel.config import interpolate, render_toml
from harness_kernel.errors import ConfigFileError

__all__ = ["ApiKey", "ServerSettings", "hash_key", "load_service_config", "read_server_settings"]

_HEX = frozenset("0123456789abcdef")


def hash_key(key: str) -> str:
    """The form a key is stored in: ``sha256:`` and the hex digest of the key."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


@attrs.frozen
class ApiKey:
    """One API key as configured (only its hash is kept)."""

    principal: str
    digest: str
    tenant: str | None = None
    admin: bool = False
    scope_principal: bool = False
    rate_limit: int | None = None
    revoked: bool = False


@attrs.frozen
class ServerSettings:
    """The validated ``[server]`` table. No keys: the service runs open, and only on a
    loopback address (``serve`` refuses another host)."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 1_048_576
    rate_limit: int = 600
    shutdown_timeout: float = 5.0
    cors_origins: tuple[str, ...] = ()
    keys: tuple[ApiKey, ...] = ()
    access_log: bool = False


_FIELDS: dict[str, tuple[type | tuple[type, ...], Any]] = {
    "host": (str, "127.0.0.1"),
    "port": (int, 8000),
    "max_body_bytes": (int, 1_048_576),
    "rate_limit": (int, 600),
    "shutdown_timeout": ((int, float), 5.0),
    "cors_origins": (list, []),
    "access_log": (bool, False),
    "keys": (list, []),
}
_KEY_FIELDS: dict[str, type | tuple[type, ...]] = {
    "principal": str,
    "tenant": str,
    "hash": str,
    "env": str,
    "admin": bool,
    "scope_principal": bool,
    "rate_limit": int,
    "revoked": bool,
}


def _kind(value: Any, expected: type | tuple[type, ...]) -> bool:
    if isinstance(value, bool) and expected is not bool:
        return False
    return isinstance(value, expected)


def _key(entry: Any, at: str, environ: Mapping[str, str], errors: list[str]) -> ApiKey | None:
    if not isinstance(entry, Mapping):
        errors.append(f"{at}: expected a table")
        return None
    for name, value in entry.items():
        expected = _KEY_FIELDS.get(name)
        if expected is None:
            errors.append(f"{at}.{name}: unknown key")
        elif not _kind(value, expected):
            errors.append(f"{at}.{name}: expected {getattr(expected, '__name__', expected)}")
    principal = entry.get("principal")
    if not isinstance(principal, str) or not principal:
        errors.append(f"{at}.principal: required")
        return None
    admin = entry.get("admin", False) is True
    tenant = entry.get("tenant")
    if not admin and not isinstance(tenant, str):
        errors.append(f"{at}.tenant: required for a key that is not an admin key")
    digest: str | None = None
    if "hash" in entry and "env" in entry:
        errors.append(f"{at}: give either hash or env, not both")
    elif isinstance(entry.get("hash"), str):
        digest = entry["hash"].lower()
        if not (digest.startswith("sha256:") and len(digest) == 71 and set(digest[7:]) <= _HEX):
            errors.append(f"{at}.hash: expected 'sha256:' and 64 hex digits")
    elif isinstance(entry.get("env"), str):
        key = environ.get(entry["env"], "")
        if not key:
            errors.append(f"{at}.env: the environment variable {entry['env']} is not set")
        digest = hash_key(key)
    else:
        errors.append(f"{at}: give hash (the key's sha256) or env (a variable holding the key)")
    limit = entry.get("rate_limit")
    if isinstance(limit, int) and limit < 1:
        errors.append(f"{at}.rate_limit: expected a positive number of requests per minute")
    if digest is None or errors:
        return None
    return ApiKey(
        principal=principal,
        digest=digest,
        tenant=tenant if isinstance(tenant, str) else None,
        admin=admin,
        scope_principal=entry.get("scope_principal", False) is True,
        rate_limit=limit if isinstance(limit, int) else None,
        revoked=entry.get("revoked", False) is True,
    )


def read_server_settings(
    table: Mapping[str, Any], environ: Mapping[str, str], source: str = "harness.toml"
) -> ServerSettings:
    """Validate a ``[server]`` table; ``ConfigFileError`` lists every problem."""
    errors: list[str] = []
    values: dict[str, Any] = {}
    for name, value in table.items():
        if name not in _FIELDS:
            errors.append(f"server.{name}: unknown key")
            continue
        expected, _ = _FIELDS[name]
        if isinstance(value, str):
            try:
                value = interpolate(value, environ)
            except ValueError as exc:
                errors.append(f"server.{name}: {exc}")
                continue
        if not _kind(value, expected):
            errors.append(f"server.{name}: expected {getattr(expected, '__name__', 'a number')}")
            continue
        values[name] = value
    for name in ("max_body_bytes", "rate_limit", "shutdown_timeout"):
        if name in values and values[name] <= 0:
            errors.append(f"server.{name}: expected a positive number")
    if "port" in values and not 0 <= values["port"] <= 65535:
        errors.append("server.port: expected a port number from 0 to 65535")
    origins = values.get("cors_origins", [])
    if not all(isinstance(o, str) for o in origins):
        errors.append("server.cors_origins: expected a list of origins")
    keys: list[ApiKey] = []
    for index, entry in enumerate(values.get("keys", [])):
        key_errors: list[str] = []
        found = _key(entry, f"server.keys[{index}]", environ, key_errors)
        errors.extend(key_errors)
        if found is not None:
            keys.append(found)
    if errors:
        raise ConfigFileError(source, errors)
    return ServerSettings(
        host=values.get("host", "127.0.0.1"),
        port=values.get("port", 8000),
        max_body_bytes=values.get("max_body_bytes", 1_048_576),
        rate_limit=values.get("rate_limit", 600),
        shutdown_timeout=float(values.get("shutdown_timeout", 5.0)),
        cors_origins=tuple(origins),
        keys=tuple(keys),
        access_log=values.get("access_log", False),
    )


def load_service_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> tuple[HarnessConfig, ServerSettings]:
    """Load ``path`` as ``load_config`` does, plus its ``[server]`` table."""
    file = Path(path).expanduser().absolute()
    source = str(path)
    env = dict(os.environ if environ is None else environ)
    env["CONFIG_DIR"] = str(file.parent)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return load_config(path, environ=environ), ServerSettings()  # it reports the problem
    table = data.pop("server", None)
    if table is None:
        return load_config(path, environ=environ), ServerSettings()
    if not isinstance(table, Mapping):
        raise ConfigFileError(source, ["server: expected a table"])
    settings = read_server_settings(table, env, source)
    try:
        return load_config(path, environ=environ), settings  # a resolver that knows [server]
    except ConfigFileError as exc:
        if not any(line.startswith("server: unknown key") for line in exc.errors):
            raise
    copy = file.with_name(f".{file.stem}.serve-{secrets.token_hex(4)}.toml")
    try:
        copy.write_text(render_toml(data), encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(
            source,
            [
                "server: this kernel's config resolver does not know [server] yet, and the copy "
                f"without it could not be written next to the file ({exc.strerror or exc}); "
                "make the directory writable"
            ],
        ) from None
    try:
        config = load_config(copy, environ=environ)
    except ConfigFileError as exc:
        raise ConfigFileError(source, exc.errors) from None
    finally:
        copy.unlink(missing_ok=True)
    return attrs.evolve(config, path=file), settings
