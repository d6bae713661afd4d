"""The example third-party sink (``examples/third_party_sink``), installed the way an installer
would lay it out, for tests that need a plugin distribution."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

from tests.support.sink_driver import ROOT

__all__ = ["EXAMPLE", "install_example"]

EXAMPLE = ROOT / "examples" / "third_party_sink"


def install_example(site: Path) -> dict[str, Any]:
    """Lay the example out in ``site`` as an installed distribution; its ``[project]`` table."""
    project: dict[str, Any] = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    shutil.copytree(EXAMPLE / "src" / "mypkg", site / "mypkg")
    dist_name = re.sub(r"[-_.]+", "_", project["name"]).lower()
    dist_info = site / f"{dist_name}-{project['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    entry_points = "".join(
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in targets.items())
        for group, targets in project["entry-points"].items()
    )
    (dist_info / "entry_points.txt").write_text(entry_points)
    return project
