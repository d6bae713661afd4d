"""The README's promises: two commands first, and CI running exactly the test command."""

from __future__ import annotations

import re
from pathlib import Path

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
