"""The recorded wire transcripts in ``../shared/fixtures/wire`` (read in place, never copied).

Each ``NAME.sse`` or ``NAME.body`` has a ``NAME.json`` beside it giving the HTTP status,
headers and the ``expected`` outcome. ``fixture_params(api)`` lists the transcripts of
one API as pytest parameters, or a single skipped parameter saying why when the
directory is absent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest

from .scripted import Raw, Status

__all__ = ["WIRE_DIR", "WireFixture", "fixture_params", "load"]

WIRE_DIR = (Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "wire").resolve()

# Hop-by-hop and framing headers are the server's business, not the transcript's.
_FRAMING = {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}


@attrs.frozen
class WireFixture:
    name: str
    meta: dict[str, Any]
    body: bytes
    streamed: bool

    @property
    def expected(self) -> dict[str, Any]:
        return self.meta["expected"]

    @property
    def status(self) -> int:
        http = self.meta.get("http") or {}
        return int(http.get("status") or self.expected.get("http_status") or 200)

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        raw = (self.meta.get("http") or {}).get("headers") or {}
        headers = tuple((k.lower(), str(v)) for k, v in raw.items() if k.lower() not in _FRAMING)
        if not any(k == "content-type" for k, _ in headers):
            kind = "text/event-stream; charset=utf-8" if self.streamed else "application/json"
            headers = (("content-type", kind), *headers)
        return headers

    def answer(self, piece: int = 0) -> Raw | Status:
        """What the scripted API serves: the transcript's bytes, verbatim."""
        if self.streamed:
            return Raw(self.body, status=self.status, headers=self.headers, piece=piece)
        return Status(self.status, self.body, self.headers)


def load(name: str) -> WireFixture:
    meta = json.loads((WIRE_DIR / f"{name}.json").read_text())
    path = WIRE_DIR / meta["file"]
    return WireFixture(name, meta, path.read_bytes(), path.suffix == ".sse")


def fixture_params(api_prefix: str) -> list[Any]:
    """Names of the transcripts whose ``api`` starts with ``api_prefix``, as parameters."""
    if not WIRE_DIR.is_dir():
        reason = f"wire fixtures not found at {WIRE_DIR} (they live outside the repository)"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="no-wire-fixtures")]
    names = []
    for meta_path in sorted(WIRE_DIR.glob("*.json")):
        meta = json.loads(meta_path.read_text())
        if str(meta.get("api", "")).startswith(api_prefix):
            names.append(meta_path.stem)
    return names
