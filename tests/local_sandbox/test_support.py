"""A host without bubblewrap skips the bwrap tests, except under CI, where it fails them:
CI installs bubblewrap (.ci/run), so its absence there is a broken CI, not a pass."""

from __future__ import annotations

import pytest

from tests.local_sandbox import _support


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes"])
def test_a_missing_bwrap_fails_under_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """With ``CI`` set, the test that needs bwrap fails with bwrap's reason."""
    monkeypatch.setenv("CI", value)
    monkeypatch.setattr(_support, "bwrap_problem", lambda: "bwrap: No permissions to create a new namespace")
    with pytest.raises(pytest.fail.Exception, match=r"isolation 'bwrap' is unusable.*No permissions.*CI must provide it"):
        _support.needs_bwrap()


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_a_missing_bwrap_skips_elsewhere(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    """Without CI, the same test is skipped, with the reason in the skip message."""
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    monkeypatch.setattr(_support, "bwrap_problem", lambda: "bwrap not found")
    with pytest.raises(pytest.skip.Exception, match="bwrap not found"):
        _support.needs_bwrap()


def test_a_working_bwrap_neither_skips_nor_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the probe finds no problem, nothing is raised, under CI or not."""
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(_support, "bwrap_problem", lambda: None)
    _support.needs_bwrap()
