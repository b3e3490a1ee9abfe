"""`config check` prints no secret: not a URL's password, not a short api key, in text
or in JSON, whether the secret is configured or only written inside a URL."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness_kernel.cli import main
from tests.cli.support import child_env, run_cli, write_deployment

MASK = "[redacted]"

PROVIDER = textwrap.dedent(
    """
    [[providers]]
    plugin = "openai"
    options = {{ base_url = "{base_url}", api_key = "{api_key}", models = ["m"] }}
    """
)


def test_config_check_masks_the_password_of_a_base_url_in_text_and_json(tmp_path: Path) -> None:
    """The reproduction: ``base_url = "http://user:PW@host/v1"`` is printed as
    ``http://user:[redacted]@host/v1`` by ``config check`` and ``config check --json``;
    a three-character ``api_key`` is masked too."""
    config = write_deployment(
        tmp_path / "deploy", extra=PROVIDER.format(base_url="http://user:PW@host/v1", api_key="k3y")
    )
    env = child_env(plugins="sqlite,logging,openai")
    text = run_cli("config", "check", config=config, env=env)
    as_json = run_cli("config", "check", "--json", config=config, env=env)
    assert text.returncode == 0, text.stderr
    assert as_json.returncode == 0, as_json.stderr
    for output in (text.stdout, as_json.stdout):
        assert "PW" not in output
        assert "k3y" not in output
        assert "http://user:[redacted]@host/v1" in output
    [provider] = [p for p in json.loads(as_json.stdout)["providers"] if p["plugin"] == "openai"]
    assert provider["options"]["base_url"] == "http://user:[redacted]@host/v1"
    assert provider["options"]["api_key"] == MASK


# The three alphabets do not meet (and no secret can be a word of the rest of the
# output), so a hit in the output is a leak, not a coincidence: users are lower case,
# keys upper case, passwords upper case and punctuation ("@" and "/" included; no "$",
# which the file would read as a ${VAR} reference).
_users = st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=10).map(lambda u: f"svc.{u}")
_passwords = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ!#%&()*+,-./:;=?@^{|}~", min_size=1, max_size=20).filter(
    lambda p: len(p) >= 4 or any(c.isalpha() for c in p)  # a short one without letters masks only if alone
)
_keys = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=12)


@pytest.fixture(scope="module")
def deploy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_deployment(tmp_path_factory.mktemp("secrets"), module="cli_agent_config_secrets")


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=_users, password=_passwords, api_key=_keys, as_json=st.booleans())
def test_config_check_never_prints_a_generated_password_or_key(
    deploy: Path, monkeypatch: pytest.MonkeyPatch, user: str, password: str, api_key: str, as_json: bool
) -> None:
    """Whatever the user, password and api key (one character or twenty), the resolved
    configuration shows the URL with its password masked and never the key itself."""
    base_url = f"https://{user}:{password}@llm.internal:8443/v1"
    deploy.write_text(
        deploy.read_text().split("\n[[providers]]\nplugin = \"openai\"")[0]
        + PROVIDER.format(base_url=base_url, api_key=api_key)
    )
    monkeypatch.setenv("HARNESS_KERNEL_PLUGINS", "sqlite,logging,openai")
    monkeypatch.setattr(sys, "path", list(sys.path))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--config", str(deploy), "config", "check", *(["--json"] if as_json else [])])
    assert code == 0, err.getvalue()
    printed = out.getvalue()
    assert base_url not in printed
    assert f"https://{user}:{MASK}@llm.internal:8443/v1" in printed
    if as_json:
        [provider] = [p for p in json.loads(printed)["providers"] if p["plugin"] == "openai"]
        assert provider["options"]["api_key"] == MASK
    else:
        assert f'api_key = "{MASK}"' in printed
        assert f'api_key = "{api_key}"' not in printed
