"""The asyncio and thread facades keep the trio API's names and parameters.

A method added to ``Session``, ``SessionStore`` or ``RunStream`` must appear, with the same
parameters, in ``harness_kernel.asyncio`` and ``harness_kernel.sync``: a host should be able
to move between the three without reading three references.
"""

from __future__ import annotations

import inspect
from types import ModuleType

import pytest

import harness_kernel
import harness_kernel.asyncio
import harness_kernel.sync

CLASSES = ("Session", "SessionStore", "RunStream")
FACADES = (harness_kernel.asyncio, harness_kernel.sync)


def _public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def _parameters(member: object) -> list[tuple[str, object, object]] | None:
    if isinstance(member, property) or not callable(member):
        return None
    return [
        (p.name, p.kind, p.default)
        for p in inspect.signature(member).parameters.values()
        if p.name != "self"
    ]


@pytest.mark.parametrize("facade", FACADES, ids=lambda m: m.__name__)
@pytest.mark.parametrize("name", CLASSES)
def test_a_facade_has_exactly_the_trio_names(facade: ModuleType, name: str) -> None:
    trio_cls = getattr(harness_kernel, name)
    facade_cls = getattr(facade, name)
    assert _public(facade_cls) == _public(trio_cls)


@pytest.mark.parametrize("facade", FACADES, ids=lambda m: m.__name__)
@pytest.mark.parametrize("name", CLASSES)
def test_a_facade_takes_the_trio_parameters(facade: ModuleType, name: str) -> None:
    trio_cls = getattr(harness_kernel, name)
    facade_cls = getattr(facade, name)
    for member in sorted(_public(trio_cls) & _public(facade_cls)):
        expected = _parameters(inspect.getattr_static(trio_cls, member))
        actual = _parameters(inspect.getattr_static(facade_cls, member))
        assert actual == expected, f"{facade.__name__}.{name}.{member}"
