"""File -> ``Config`` in one step, with every error reported at once as ``file:line: key: why``.

Sinks are validated by the ``Config`` model of their own type, found through the entry-point
registry, so third-party sinks get the same strict checking and error messages as ours.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tcsms_poller.config.errors import describe_errors
from tcsms_poller.config.model import Config
from tcsms_poller.config.source import Loc, Problem, SourceText, parse_yaml
from tcsms_poller.exits import ConfigError
from tcsms_poller.settings_types import E164_PATTERN, is_e164, resolve_path
from tcsms_poller.sinks.base import SinkSettings
from tcsms_poller.sinks.registry import load_sink_type
from tcsms_poller.textfile import TextFileError, read_text_file

__all__ = ["config_from_mapping", "load_config", "read_numbers_file", "render_config"]

DEFAULT_SINKS = ({"type": "stdout"},)
MAX_CONFIG_BYTES = 1024 * 1024
MAX_NUMBERS_FILE_BYTES = 32 * 1024 * 1024  # 100,000 numbers take under 2 MiB
# A line of a numbers file without comments: blank, or one E.164 number (ASCII digits) in spaces.
_PLAIN_LINE = re.compile(rf"[ \t]*(?:{E164_PATTERN}[ \t]*)?\r?")


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate the configuration file at ``path``."""
    try:
        text = read_text_file(path, max_bytes=MAX_CONFIG_BYTES)
    except TextFileError as error:
        raise ConfigError(f"{path}: cannot read the configuration: {error.reason}") from None
    environ = os.environ if environ is None else environ
    source = parse_yaml(text, str(path), environ)
    return _validate(source, base_dir=path.resolve().parent, environ=environ)


def config_from_mapping(
    data: Mapping[str, Any],
    *,
    source: str = "<memory>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Validate configuration data built in code (the demo, tests); no interpolation."""
    text = SourceText(name=source, data=dict(data))
    return _validate(text, base_dir=base_dir or Path.cwd(), environ=environ or os.environ)


def _validate(source: SourceText, *, base_dir: Path, environ: Mapping[str, str]) -> Config:
    context = {"base_dir": base_dir, "environ": environ}
    data = dict(source.data)
    problems = list(source.problems)
    failed_sinks: list[Loc] = []
    sinks = data.get("sinks", DEFAULT_SINKS)
    if isinstance(sinks, list | tuple):
        data["sinks"] = []
        for index, item in enumerate(sinks):
            sink_problems = _sink_problems(item, ("sinks", index), source, context)
            if isinstance(sink_problems, SinkSettings):
                data["sinks"].append(sink_problems)
            else:
                problems.extend(sink_problems)
                failed_sinks.append(("sinks", index))
    data["source"] = source.name
    # Numbers files are read even when the schema fails, so their problems come in this pass too.
    problems.extend(_numbers_file_problems(data, source, base_dir))
    try:
        config = Config.model_validate(data, context=context)
    except ValidationError as error:
        problems.extend(describe_errors(error, source, Config, failed_elsewhere=failed_sinks))
        Problem.raise_all(problems)
        raise  # unreachable: there is at least one problem
    Problem.raise_all(problems)
    return config


def _numbers_file_problems(
    data: Mapping[str, Any], source: SourceText, base_dir: Path
) -> list[Problem]:
    """What is wrong with each app's ``by_number.numbers_file``, read as the daemon will."""
    problems: list[Problem] = []
    apps = data.get("apps")
    for index, app in enumerate(apps if isinstance(apps, list) else []):
        by_number = app.get("by_number") if isinstance(app, dict) else None
        name = by_number.get("numbers_file") if isinstance(by_number, dict) else None
        loc = ("apps", index, "by_number", "numbers_file")
        if not isinstance(name, str) or not name or source.has_failed(loc):
            continue  # absent, or a wrong type the schema reports
        try:
            read_numbers_file(resolve_path(Path(name), base_dir))
        except ConfigError as error:
            problems.append(source.problem(loc, str(error)))
    return problems


def _sink_problems(
    item: Any, loc: Loc, source: SourceText, context: Mapping[str, Any]
) -> SinkSettings | list[Problem]:
    """The sink's settings, validated by its own type's model, or what is wrong with them."""
    if not isinstance(item, dict):
        return [source.problem(loc, "must be a mapping with a 'type' key")]
    kind = item.get("type")
    if not isinstance(kind, str):
        return [source.problem((*loc, "type"), "is required (stdout, file, http, ...)")]
    try:
        model = load_sink_type(kind).factory.Config
    except LookupError as error:
        return [source.problem((*loc, "type"), str(error).strip("'\""))]
    except Exception as error:  # noqa: BLE001 - a broken plugin is a configuration problem
        return [source.problem((*loc, "type"), f"sink type {kind!r} fails to load: {error}")]
    try:
        return model.model_validate(item, context=context)
    except ValidationError as error:
        return describe_errors(error, source, model, prefix=loc)


def read_numbers_file(path: Path) -> tuple[str, ...]:
    """One E.164 number a line; blank lines and ``#`` comments allowed; duplicates ignored.

    The file is read at every start and reload and may hold 100,000 numbers: a plain file
    (numbers, blank lines, spaces) is checked by one regular expression a line, without a Python
    loop, about twice as fast; anything else (comments, mistakes) takes the line-by-line path,
    which also names the offending line. Loading the configuration validates the file and the
    daemon then syncs it: the second read of an unchanged file (same inode, size and mtime) is
    the first one's result.
    """
    try:
        stat = path.stat()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    return _read_numbers_file(path, stat.st_ino, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1)
def _read_numbers_file(path: Path, inode: int, size: int, mtime_ns: int) -> tuple[str, ...]:
    del inode, size, mtime_ns  # the cache key: a changed file is read again
    try:
        text = read_text_file(path, max_bytes=MAX_NUMBERS_FILE_BYTES)
    except TextFileError as error:
        raise ConfigError(f"{path}: cannot read: {error.reason}") from None
    lines = text.split("\n")
    if all(map(_PLAIN_LINE.fullmatch, lines)):
        plain = dict.fromkeys(map(str.strip, lines))
        plain.pop("", None)  # the blank lines
        return tuple(plain)
    numbers: dict[str, None] = {}
    for line_number, line in enumerate(text.splitlines(), start=1):
        number = line.split("#", 1)[0].strip()
        if not number:
            continue
        if not is_e164(number):
            raise ConfigError(
                f"{path}:{line_number}: {number!r} is not an E.164 number like +8613711112222"
            )
        numbers[number] = None
    return tuple(numbers)


def render_config(config: Config) -> str:
    """The effective configuration as YAML, every secret shown as ``***``."""
    data = config.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
