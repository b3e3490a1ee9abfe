"""The three storage distributions register through their entry points."""

from __future__ import annotations

from harness_kernel import PluginRegistry


def test_file_sqlite_and_s3_appear_in_the_plugin_listing() -> None:
    """Each backend is listed as loaded storage, credited to its own distribution."""
    rows = {(row.kind, row.name): row for row in PluginRegistry().listing()}
    for name, distribution in (
        ("file", "harness-kernel-file"),
        ("sqlite", "harness-kernel-sqlite"),
        ("s3", "harness-kernel-s3"),
    ):
        row = rows[("storage", name)]
        assert row.status == "loaded", row.error
        assert row.distribution == distribution
        assert row.version == "0.1.0"
