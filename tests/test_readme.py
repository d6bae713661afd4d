"""The README's promises: two commands first, and CI running exactly the test command."""

from __future__ import annotations

import re
from pathlib import Path

from tcsms_poller.cli import COMMANDS
from tcsms_poller.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", text)


def test_the_readme_starts_with_the_demo_and_the_test_command() -> None:
    demo, tests = readme_commands()[:2]
    assert demo.startswith("python3 -m venv .venv && ")
    assert "tcsms-poller demo" in demo
    assert tests.startswith("python3 -m venv .venv && ")
    for tool in ("ruff check", "ruff format --check", "mypy", "pytest"):
        assert f".venv/bin/{tool}" in tests


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    tests = readme_commands()[1]
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci_lines[-1] == tests


def test_installs_are_pinned() -> None:
    for command in readme_commands()[:2]:
        assert "-c constraints.txt" in command
    pins = (ROOT / "constraints.txt").read_text().split()
    for package in ("anyio", "httpx", "aiolimiter", "structlog", "pydantic", "uvicorn"):
        assert any(pin.lower().startswith(f"{package}==") for pin in pins), package


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_minimal_configuration_loads(tmp_path: Path) -> None:
    """The README's configuration is complete and valid once its variables are set."""
    [block] = re.findall(r"```yaml\n(.+?)```", readme_section("Configuration"), flags=re.DOTALL)
    (tmp_path / "config.yaml").write_text(block)
    environ = {
        "TENCENTCLOUD_SECRET_ID": "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
        "TENCENTCLOUD_SECRET_KEY": "0123456789abcdefghijklmnopqrstuv",
        "HOOK_SECRET": "hook-secret-0123456789",
    }
    config = load_config(tmp_path / "config.yaml", environ=environ)
    assert [app.sms_sdk_app_id for app in config.apps] == ["1400006666"]
    assert [sink.type for sink in config.sinks] == ["stdout", "http"]


def test_the_commands_table_names_every_command() -> None:
    """Each command of the CLI has its row, and no row names a command that is gone."""
    rows = re.findall(r"^\| `tcsms-poller ([a-z-]+)", readme_section("Commands"), re.MULTILINE)
    assert sorted(rows) == sorted(COMMANDS)
