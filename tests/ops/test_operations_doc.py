"""The operator's guide stays true: its metrics, commands, exit codes and examples are real."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tcsms_poller import exits
from tcsms_poller.cli import COMMANDS
from tcsms_poller.config import load_config
from tcsms_poller.exits import ConfigError
from tcsms_poller.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "operations.md"
UNIT = ROOT / "systemd" / "tcsms-poller.service"
CONFIG_MARK = "# /etc/tcsms-poller/config.yaml"
_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def guide() -> str:
    """The operator's guide, ``docs/operations.md``."""
    return GUIDE.read_text()


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", guide(), flags=re.DOTALL)


def metric_families() -> set[str]:
    """The names of every metric family the daemon registers."""
    return {family.name for family in Metrics().registry.collect()}


def family_of(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def test_every_metric_named_in_the_guide_exists() -> None:
    """Tables and alert rules name metrics the daemon really exports (scraped spelling allowed)."""
    named = set(re.findall(r"\btcsms_poller_[a-z_]+", guide()))
    assert named
    families = metric_families()
    unknown = {name for name in named if name not in families and family_of(name) not in families}
    assert unknown == set()


def test_every_metric_of_the_daemon_is_in_the_guide() -> None:
    """The metrics table is complete."""
    documented = {family_of(name) for name in re.findall(r"\btcsms_poller_[a-z_]+", guide())}
    ours = {name for name in metric_families() if name.startswith("tcsms_poller_")}
    assert ours - documented == set()


def test_the_exit_code_table_matches_the_program() -> None:
    """The rows of the exit-code table are exactly the codes ``exits`` defines."""
    section = guide().split("## Exit codes", 1)[1]
    codes = {int(code) for code in re.findall(r"^\| (\d+) \|", section, flags=re.MULTILINE)}
    assert codes == {exits.EX_OK, exits.EX_FAILURE, exits.EX_USAGE, exits.EX_CONFIG}


def test_the_commands_named_exist() -> None:
    """Every ``tcsms-poller <command> -...`` in the guide is a command of the CLI (``docker exec
    tcsms-poller ...`` names the container, not the program)."""
    named = set(re.findall(r"(?<!exec )tcsms-poller ([a-z][a-z-]+) -", guide()))
    assert named
    assert named - COMMANDS.keys() == set()


def test_the_credential_paths_match_the_unit() -> None:
    """The credential file the guide tells operators to create is the one the unit loads."""
    unit = UNIT.read_text()
    for path in re.findall(r"/etc/credstore/tcsms-poller/[a-z-]+", guide()):
        name = path.rsplit("/", 1)[1]
        assert f"LoadCredential={name}:{path}" in unit, path


def test_the_example_configuration_is_valid(tmp_path: Path) -> None:
    """The guide's config.yaml loads with its secrets given as credentials, as under systemd."""
    (block,) = [b for b in code_blocks("yaml") if b.startswith(CONFIG_MARK)]
    directory = tmp_path / "etc"
    credentials = tmp_path / "credentials"
    directory.mkdir()
    credentials.mkdir()
    for name in re.findall(r"_file: ([a-z][a-z-]+)\s", block):
        (credentials / name).write_text("0123456789abcdefghijklmnopqrstuv\n")
    (directory / "numbers.txt").write_text("+8613711112222\n")
    (directory / "config.yaml").write_text(block)
    environ = {"CREDENTIALS_DIRECTORY": str(credentials)}
    config = load_config(directory / "config.yaml", environ=environ)
    assert config.server is not None
    assert config.tencent.secret_key.reveal() == "0123456789abcdefghijklmnopqrstuv"
    assert config.state.path == Path("/var/lib/tcsms-poller/state.db")


@pytest.mark.parametrize("marker", ["services:", "groups:"])
def test_the_compose_file_and_alert_rules_parse(marker: str) -> None:
    """The compose example and the Prometheus rules are well-formed YAML."""
    (block,) = [b for b in code_blocks("yaml") if b.startswith(marker)]
    assert isinstance(yaml.safe_load(block), dict)


def test_every_alert_has_a_name_and_an_expression() -> None:
    """Each rule of the alerts block is complete."""
    (block,) = [b for b in code_blocks("yaml") if b.startswith("groups:")]
    rules = yaml.safe_load(block)["groups"][0]["rules"]
    assert len(rules) >= 4
    for rule in rules:
        assert rule["alert"].startswith("Tcsms")
        assert "tcsms_poller_" in rule["expr"]


def test_the_logrotate_snippet_rotates_the_guides_file_sink_safely() -> None:
    """The file it rotates is the guide's file sink; create (never copytruncate, which would
    leave the committed offset past the end); postrotate reloads the unit the guide installs."""
    found = re.search(r"\n```\n(# /etc/logrotate\.d/tcsms-poller\n.*?)```", guide(), re.DOTALL)
    assert found is not None
    block = found.group(1)
    (config,) = [b for b in code_blocks("yaml") if b.startswith(CONFIG_MARK)]
    sinks = yaml.safe_load(config)["sinks"]
    [file_sink] = [sink for sink in sinks if sink["type"] == "file"]
    directives = [line.strip() for line in block.splitlines()[1:]]
    assert directives[0] == f"{file_sink['path']} {{"
    assert "create" in directives
    assert "copytruncate" not in block
    reload_line = directives[directives.index("postrotate") + 1]
    assert reload_line == f"systemctl reload {UNIT.stem}"
    assert "ExecReload=/bin/kill -HUP $MAINPID" in UNIT.read_text()


def test_the_guides_configuration_without_its_files_names_every_one_at_once(
    tmp_path: Path,
) -> None:
    """Each missing credential and the missing numbers file in one round, not one per run."""
    (block,) = [b for b in code_blocks("yaml") if b.startswith(CONFIG_MARK)]
    (tmp_path / "config.yaml").write_text(block)
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path / "no-credentials")}
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path / "config.yaml", environ=environ)
    keys = [line.split(": ")[1] for line in str(raised.value).splitlines()]
    file_keys = re.findall(r"^ *([a-z_]+_file):", block, flags=re.MULTILINE)
    assert len(keys) == len(file_keys) == 5
    assert [key.rsplit(".", 1)[-1] for key in keys] == file_keys
