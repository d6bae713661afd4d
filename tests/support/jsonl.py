"""Reading the JSON Lines files sinks write, while the daemon may still be writing them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["ids_in", "read_jsonl"]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a JSON Lines file (none if it does not exist yet).

    A line still being written (no newline yet) is left out: tests read while the daemon writes.
    """
    if not path.exists():
        return []
    raw = path.read_bytes()
    complete = raw[: raw.rfind(b"\n") + 1].decode()
    return [json.loads(line) for line in complete.splitlines() if line]


def ids_in(path: Path) -> list[str]:
    """The ``id`` of every complete record in a JSON Lines sink file, in file order."""
    return [record["id"] for record in read_jsonl(path)]
