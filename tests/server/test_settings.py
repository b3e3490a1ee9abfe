"""The [server] table: validated with every problem at its path, keys kept only as
hashes, and the rest of the file loaded as load_config would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness_kernel.errors import ConfigFileError
from harness_kernel.server import ApiKey, ServerSettings, hash_key, load_service_config

from .conftest import write_config


def test_the_table_is_read_with_its_defaults(tmp_path: Path) -> None:
    """A file with keys from a hash and from the environment: both kept as hashes."""
    table = f"""
[server]
port = 9000
cors_origins = ["https://app.example"]

[[server.keys]]
principal = "alice"
tenant = "acme"
hash = "{hash_key("k1")}"

[[server.keys]]
principal = "ops"
admin = true
env = "OPS_KEY"
rate_limit = 10
"""
    config, settings = load_service_config(write_config(tmp_path, server_table=table), environ={"OPS_KEY": "k2"})
    assert config.path == tmp_path / "harness.toml"
    assert config.agent.name == "shop"
    assert settings == ServerSettings(
        port=9000,
        cors_origins=("https://app.example",),
        keys=(
            ApiKey("alice", hash_key("k1"), tenant="acme"),
            ApiKey("ops", hash_key("k2"), admin=True, rate_limit=10),
        ),
    )
    assert not list(tmp_path.glob(".harness.serve-*"))  # the copy without [server] is gone


def test_every_problem_is_reported_at_its_path(tmp_path: Path) -> None:
    table = """
[server]
port = "eighty"
colour = "blue"
max_body_bytes = -1

[[server.keys]]
principal = "x"
hash = "md5:abc"

[[server.keys]]
tenant = "acme"
env = "NOT_SET_ANYWHERE"
"""
    with pytest.raises(ConfigFileError) as raised:
        load_service_config(write_config(tmp_path, server_table=table), environ={})
    assert set(raised.value.errors) >= {
        "server.port: expected int",
        "server.colour: unknown key",
        "server.max_body_bytes: expected a positive number",
        "server.keys[0].tenant: required for a key that is not an admin key",
        "server.keys[0].hash: expected 'sha256:' and 64 hex digits",
        "server.keys[1].principal: required",
    }


def test_the_rest_of_the_file_is_still_checked(tmp_path: Path) -> None:
    """A problem outside [server] is reported against the original file's name."""
    config = write_config(tmp_path, server_table="\n[server]\nport = 0\n")
    config.write_text(config.read_text().replace('default_model = "shop/shop"', "default_model = 3"))
    with pytest.raises(ConfigFileError) as raised:
        load_service_config(config)
    assert raised.value.source == str(config)
    assert any(line.startswith("default_model") for line in raised.value.errors)


def test_serve_exits_2_on_a_bad_table(tmp_path: Path) -> None:
    config = write_config(tmp_path, server_table="\n[server]\nport = 70000\n")
    done = subprocess.run(
        [sys.executable, "-m", "harness_kernel.cli", "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert "server.port: expected a port number from 0 to 65535" in done.stderr
