"""harness-kernel-s3: session storage in an S3 bucket (plugin name ``s3``).

::

    create_session_store(agent=agent, storage="s3",
                         storage_options={"bucket": "my-sessions", "prefix": "prod/"})

Event batches are objects created with ``If-None-Match: *`` under keys ordered by
sequence and the record is replaced with ``If-Match`` on its ETag, so many hosts can
share one bucket: two writers racing on one session get exactly one winner and the loser
a ``Conflict``. Before its first request the storage checks that the server enforces
both conditions and refuses to work (``ConfigError``) if it ignores either. Credentials
come from the standard AWS chain. See docs/storage/s3.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import attrs

from harness_kernel import hookimpl, lazy_exports
from harness_kernel.hookspecs import Register

from ._keys import decode_id, encode_id

if TYPE_CHECKING:
    from ._client import S3Client
    from ._storage import S3Storage

__all__ = ["S3Client", "S3Options", "S3Storage", "build", "decode_id", "encode_id"]

_positive = attrs.validators.ge(1)


@attrs.define
class S3Options:
    """Options of the ``s3`` storage plugin. Credentials come from the AWS chain, not here."""

    bucket: str
    """The bucket; it must exist and support conditional writes."""
    prefix: str = ""
    """Key prefix for everything this storage writes (``"prod/"``); several stores may
    share a bucket under different prefixes."""
    endpoint_url: str | None = None
    """An S3-compatible endpoint (MinIO, a local test server); ``None`` for AWS."""
    region: str | None = None
    """AWS region; ``None`` uses the chain's (``AWS_REGION``, profile)."""
    profile: str | None = None
    """A named profile of the shared AWS config; ``None`` uses the default chain."""
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    max_concurrency: int = attrs.field(default=16, validator=_positive)
    """Requests in flight at once (worker threads and pooled connections)."""
    max_attempts: int = attrs.field(default=5, validator=_positive)
    """Tries per request, the first included, for throttling, 5xx and broken connections."""
    base_delay_ms: int = attrs.field(default=100, validator=attrs.validators.ge(0))
    max_delay_ms: int = attrs.field(default=5000, validator=attrs.validators.ge(0))
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    segment_events: int = attrs.field(default=128, validator=attrs.validators.ge(2))
    """Events per read segment: reading a log of n events takes about n / segment_events GETs."""
    unsafe_skip_conditional_write_check: bool = False
    """Skip the check, before the first request, that the server enforces ``If-None-Match``
    and ``If-Match``. Unsafe: on a server that ignores them, two writers both succeed and
    acknowledged messages are silently lost. Only for a server known to enforce them."""


# botocore and boto3 load when a storage is built (or one of these names is used), not
# when the plugin is imported: every command imports every installed plugin to list it.
_MODULE_OF = {"S3Client": "._client", "S3Storage": "._storage"}


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF)


def build(options: S3Options) -> S3Storage:
    from ._client import S3Client
    from ._storage import S3Storage

    client = S3Client(
        bucket=options.bucket,
        endpoint_url=options.endpoint_url,
        region=options.region,
        profile=options.profile,
        addressing_style=options.addressing_style,
        max_concurrency=options.max_concurrency,
        max_attempts=options.max_attempts,
        base_delay=options.base_delay_ms / 1000,
        max_delay=options.max_delay_ms / 1000,
        connect_timeout=options.connect_timeout_s,
        read_timeout=options.read_timeout_s,
    )
    return S3Storage(
        client,
        prefix=options.prefix,
        segment_events=options.segment_events,
        check_conditional_writes=not options.unsafe_skip_conditional_write_check,
    )


@hookimpl
def harness_kernel_storage(register: Register) -> None:
    register("s3", build, options=S3Options)
