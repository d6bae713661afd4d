"""Drives one sink in a process of its own, for what a test cannot do in-process.

A file-size limit (a disk that fills up mid-write), tracing system calls (was fsync called?) and
sinks registered through entry points only visible to a fresh interpreter all need a process::

    python -m tests.support.sink_driver SCRIPT.json     # from the repository root

The script names the sink type (looked up with ``load_sink_type``, exactly as the daemon does),
its configuration, the committed position, and steps; each step prints one JSON line::

    {"type": "file", "config": {...}, "position": null, "steps": [
        {"send": ["a", "b"]},        -> {"ack": {...}} | {"retryable": "..."} | {"rejected": ...}
        {"file_size_limit": 4096},   -> {"ok": true}   (RLIMIT_FSIZE, null: none)
        {"reopen": true}]}           -> {"ok": true}
    ... and a last line {"loaded": {"distribution": ..., "version": ...}} after aclose().
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from tcsms_poller.sinks.base import RejectedBatchError, RetryableSinkError, SinkContext
from tcsms_poller.sinks.registry import load_sink_type
from tests.support.sink_rig import outbox_records

ROOT = Path(__file__).resolve().parents[2]


def run_sink_driver(
    script: Mapping[str, Any],
    workdir: Path,
    *,
    pythonpath: Sequence[Path] = (),
    wrapper: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Run the driver on ``script`` in a fresh interpreter; its output lines, parsed.

    ``pythonpath`` is prepended to the child's ``sys.path`` (e.g. a plugin's site directory);
    ``wrapper`` comes before the interpreter on the command line (e.g. ``strace ...``).
    """
    script_path = workdir / "driver-script.json"
    script_path.write_text(json.dumps(script))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath)}
    done = subprocess.run(
        [*wrapper, sys.executable, "-m", "tests.support.sink_driver", str(script_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"driver failed ({done.returncode}):\n{done.stderr}"
    return [json.loads(line) for line in done.stdout.splitlines()]


def emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def run(script: dict[str, Any]) -> None:
    loaded = load_sink_type(script["type"])
    config = loaded.factory.Config.model_validate(script["config"])
    context = SinkContext(
        name=config.sink_name,
        state_dir=Path(script.get("state_dir", ".")),
        position=script.get("position"),
    )
    sink = loaded.factory(config, context)
    await sink.open()
    seq = 1
    for step in script["steps"]:
        if "send" in step:
            batch = outbox_records(*step["send"], first_seq=seq)
            try:
                ack = await sink.send(batch)
            except RetryableSinkError as error:
                emit({"retryable": str(error)})
            except RejectedBatchError as error:
                emit({"rejected": str(error)})
            else:
                seq += len(batch)
                emit({"ack": None if ack.position is None else dict(ack.position)})
        elif "file_size_limit" in step:
            limit = step["file_size_limit"]
            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            soft = hard if limit is None else limit
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            emit({"ok": True})
        elif "reopen" in step:
            await sink.reopen()
            emit({"ok": True})
        else:
            raise ValueError(f"unknown step {step!r}")
    await sink.aclose()
    emit({"loaded": {"distribution": loaded.distribution, "version": loaded.version}})


def main() -> None:
    # Past RLIMIT_FSIZE the kernel sends SIGXFSZ (default: die); ignored, write() fails with EFBIG.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    script = json.loads(Path(sys.argv[1]).read_text())
    anyio.run(run, script, backend="asyncio")


if __name__ == "__main__":
    main()
