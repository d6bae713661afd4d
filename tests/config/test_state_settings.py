"""The ``state:`` settings of PostgreSQL: a URL checked without ever being echoed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tcsms_poller.config import Config, load_config, render_config
from tcsms_poller.exits import ConfigError

HEAD = """\
tencent: {secret_id: AKIDtest, secret_key: s3cr3t-key-value}
apps:
  - sms_sdk_app_id: "1400006666"
sinks: [{type: stdout}]
"""
PASSWORD = "hunter2-pg-password"


def load(tmp_path: Path, state: str) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(HEAD + state)
    return load_config(path, environ={"PGPASS": PASSWORD})


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"mysql://u:{PASSWORD}@db/x", "must be a URL like postgresql://USER:PASSWORD@HOST"),
        (f"postgresql://u:{PASSWORD}@db:54x/x", "the URL's port must be a number"),
        (f"u:{PASSWORD}@db/x", "must be a URL like postgresql://USER:PASSWORD@HOST"),
    ],
)
def test_a_bad_url_is_refused_without_showing_it(tmp_path: Path, url: str, message: str) -> None:
    """The one-line error names the key and what is expected, never the value."""
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, f"state: {{url: '{url}'}}\n")
    assert "state.url: " + message in str(raised.value)
    assert PASSWORD not in str(raised.value)


def test_the_url_may_come_from_a_file_or_a_variable_and_renders_masked(tmp_path: Path) -> None:
    """``url_file`` and ``${VAR}`` work as for every secret; the password alone is a secret too."""
    (tmp_path / "state-url").write_text(f"postgresql://tcsms:{PASSWORD}@db:5432/tcsms\n")
    config = load(tmp_path, "state: {url_file: state-url, pool_size: 3, statement_timeout: 5s}\n")
    assert config.state.url is not None
    assert config.state.url.reveal() == f"postgresql://tcsms:{PASSWORD}@db:5432/tcsms"
    assert (config.state.pool_size, config.state.statement_timeout) == (3, 5.0)
    rendered = render_config(config)
    assert PASSWORD not in rendered
    assert yaml.safe_load(rendered)["state"]["url"] == "***"
    assert PASSWORD in [secret.reveal() for secret in config.secrets()]
    from_env = load(tmp_path, "state: {url: 'postgresql://tcsms:${PGPASS}@db/tcsms'}\n")
    assert from_env.state.url is not None
    assert from_env.state.url.reveal().endswith(f":{PASSWORD}@db/tcsms")


def test_sqlite_stays_the_default(tmp_path: Path) -> None:
    """Without ``url`` the state is the SQLite file at ``path``."""
    config = load(tmp_path, "")
    assert config.state.url is None
    assert config.state.path.name == "state.db"
