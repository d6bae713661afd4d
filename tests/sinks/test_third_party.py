"""A sink from another distribution is found through its entry point and receives records.

The example package (``examples/third_party_sink``) is registered the way an installer would:
its sources and a ``*.dist-info`` directory (``METADATA``, ``entry_points.txt`` generated from its
own ``pyproject.toml``) in a site directory on a fresh interpreter's ``PYTHONPATH``. That is what
``pip install`` leaves behind, without needing a build backend or a network.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tcsms_poller.sinks.registry import ENTRY_POINT_GROUP, known_sink_types
from tests.support.records import record
from tests.support.sink_driver import ROOT, run_sink_driver
from tests.support.third_party import EXAMPLE, install_example

DOC = ROOT / "docs" / "third-party-sink.md"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site directory holding the installed example, invisible to this test process."""
    path = tmp_path / "site"
    path.mkdir()
    install_example(path)
    return path


def run_python(code: str, site: Path) -> str:
    """Run ``code`` in a fresh interpreter that sees ``site``; its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_example_declares_its_entry_point() -> None:
    """The pyproject registers ``mysink`` under the daemon's group, pointing at the class."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    assert project["entry-points"][ENTRY_POINT_GROUP] == {"mysink": "mypkg:MySink"}
    assert "mysink" not in known_sink_types()  # only the subprocesses below can see it


def test_the_plugin_is_discovered_and_receives_records(site: Path, tmp_path: Path) -> None:
    """load_sink_type finds it by name; open, send, reopen, send, aclose deliver every record."""
    out = tmp_path / "delivered" / "mysink.jsonl"
    lines = run_sink_driver(
        {
            "type": "mysink",
            "config": {"type": "mysink", "path": str(out), "batch_size": 2},
            "steps": [{"send": ["a", "b"]}, {"reopen": True}, {"send": ["c"]}],
        },
        tmp_path,
        pythonpath=[site],
    )
    assert lines == [
        {"ack": None},
        {"ok": True},
        {"ack": None},
        {"loaded": {"distribution": "tcsms-poller-mysink", "version": "0.1.0"}},
    ]
    assert out.read_bytes() == b"".join(record(i).to_json() + b"\n" for i in "abc")


def test_the_plugin_is_listed_beside_the_built_in_sinks(site: Path) -> None:
    """An unknown type's error names the plugin among the known ones."""
    code = (
        "from tcsms_poller.sinks.registry import load_sink_type\n"
        "try:\n    load_sink_type('nope')\n"
        "except LookupError as error:\n    print(error)\n"
    )
    message = run_python(code, site)
    listed = re.fullmatch(r"unknown sink type 'nope' \(known: (.*)\)", message)
    assert listed is not None, message
    assert {"file", "http", "stdout", "mysink"} <= set(listed.group(1).split(", "))


def test_the_plugin_options_are_validated_strictly(site: Path, tmp_path: Path) -> None:
    """A typo in the plugin's options is an error, as for built-in sinks."""
    code = (
        "import json, sys\n"
        "from pydantic import ValidationError\n"
        "from tcsms_poller.sinks.registry import load_sink_type\n"
        "model = load_sink_type('mysink').factory.Config\n"
        "try:\n    model.model_validate({'type': 'mysink', 'path': 'x', 'pth': 'y'})\n"
        "except ValidationError as error:\n"
        "    print(json.dumps([e['loc'] for e in error.errors()]))\n"
    )
    assert json.loads(run_python(code, site)) == [["pth"]]


def test_the_documentation_shows_the_example_verbatim() -> None:
    """Each file block in the guide is the example's file, byte for byte."""
    blocks = re.findall(r"<!-- (\S+) -->\n```\w+\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    shown = dict(blocks)
    assert set(shown) == {
        "examples/third_party_sink/pyproject.toml",
        "examples/third_party_sink/src/mypkg/__init__.py",
    }
    for path, text in shown.items():
        assert text == (ROOT / path).read_text(), f"{path} differs from the guide"


def test_the_former_fields_module_re_exports_the_settings_types() -> None:
    import tcsms_poller.fields as former
    import tcsms_poller.settings_types as current

    assert former.__all__ == current.__all__
    assert all(getattr(former, name) is getattr(current, name) for name in current.__all__)
