"""Annotated pydantic types shared by every configuration model, built-in or plugin.

A sink plugin's ``Config`` uses the same ``Duration``, ``Secret`` and ``ByteSize`` as ours, so
durations are spelled alike everywhere and every secret is redacted by ``check-config`` and
masked in logs without the plugin doing anything.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    GetCoreSchemaHandler,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import core_schema

from tcsms_poller.textfile import TextFileError, read_text_file
from tcsms_poller.units import format_duration, format_size, parse_duration, parse_size

__all__ = [
    "E164",
    "E164_PATTERN",
    "REDACTED",
    "ByteSize",
    "ConfigModel",
    "ConfigPath",
    "Duration",
    "Secret",
    "SecretValue",
    "is_e164",
    "resolve_path",
]

REDACTED = "***"
E164_PATTERN = r"\+[1-9][0-9]{6,14}"  # ASCII digits only: \d takes any script's
_E164 = re.compile(E164_PATTERN)
# Bounds no setting needs to pass: beyond them a value can only be a typo, and some would
# overflow the clock arithmetic of every commit (a dedupe_ttl of 10^18 days) or the memory.
MIN_DURATION = 0.001
MAX_DURATION = 366 * 86_400.0
MAX_SIZE = 1024**3
MAX_SECRET_FILE_BYTES = 64 * 1024
# A secret may end up in a header (a token, an HTTP sink's header value), where a CR or LF
# would fail every request, forever, looking like a transient error.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SecretValue:
    """A string that never shows itself by accident: ``str()`` and ``repr()`` give ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The real value, for the one place that must use it."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretValue) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __str__(self) -> str:
        return REDACTED

    def __repr__(self) -> str:
        return f"SecretValue({REDACTED!r})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _to_secret,
            json_schema_input_schema=core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(_redact),
        )


def _redact(secret: SecretValue) -> str:
    return REDACTED if secret else ""


def _to_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"invalid duration {value!r}: write it like 500ms, 5s, 2m, 1h or 7d")
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"invalid duration {value!r}: must be greater than zero")
    if seconds < MIN_DURATION:
        raise ValueError(f"invalid duration {value!r}: must be at least 1ms")
    if seconds > MAX_DURATION:
        raise ValueError(f"invalid duration {value!r}: must be at most 366d")
    return seconds


def _to_bytes(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"invalid size {value!r}: write it like 512KiB or 1MiB")
    size = parse_size(value)
    if size > MAX_SIZE:
        raise ValueError(f"invalid size {value!r}: must be at most 1GiB")
    return size


class _Unreadable:
    """Stands in for a secret whose ``*_file`` failed, so the section's other keys are still
    checked and every problem is reported at once."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def _to_secret(value: Any) -> SecretValue:
    if isinstance(value, SecretValue):
        return value
    if isinstance(value, _Unreadable):
        raise ValueError(value.message)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("must be a string")
    text = str(value)
    if _CONTROL.search(text):
        raise ValueError("must not contain control characters (a line break, a tab)")
    return SecretValue(text)


def is_e164(number: str) -> bool:
    """Whether ``number`` is ``+`` and 7-15 digits, no leading zero (ITU-T E.164)."""
    return _E164.fullmatch(number) is not None


def _check_e164(number: str) -> str:
    if not is_e164(number):
        raise ValueError(f"{number!r} is not an E.164 number like +8613711112222")
    return number


# Seconds as a float; written ``500ms``/``5s``/``2m``/``1h``/``7d`` in YAML and rendered back so.
Duration = Annotated[
    float,
    BeforeValidator(_to_seconds),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h|d)$"}),
]
# Bytes as an int; written ``512KiB``/``1MiB`` (or a plain number of bytes).
ByteSize = Annotated[
    int,
    BeforeValidator(_to_bytes),
    PlainSerializer(format_size, return_type=str, when_used="json"),
    WithJsonSchema({"type": ["string", "integer"]}),
]
# A secret: ``***`` whenever rendered; ``.reveal()`` for the one place that needs it.
Secret = SecretValue
E164 = Annotated[str, AfterValidator(_check_e164)]


def resolve_path(path: Path, base: Path | None) -> Path:
    """``path`` with ``~`` expanded; a relative one under ``base`` (the configuration's dir)."""
    path = path.expanduser()
    return path if path.is_absolute() or base is None else Path(base) / path


def _resolve_path(path: Path, info: ValidationInfo) -> Path:
    return resolve_path(path, (info.context or {}).get("base_dir"))


# A path; a relative one is relative to the configuration file's directory (not the cwd, which
# differs between a shell, systemd and a container).
ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]


def _read_secret_file(path_text: Any, key: str, info: ValidationInfo) -> str:
    if not isinstance(path_text, str) or not path_text:
        raise ValueError(f"{key}: must be a path to a file holding the secret")
    context: Mapping[str, Any] = info.context or {}
    environ: Mapping[str, str] = context.get("environ", os.environ)
    base = environ.get("CREDENTIALS_DIRECTORY") or context.get("base_dir")
    path = Path(path_text).expanduser()
    if not path.is_absolute() and base:
        path = Path(base) / path
    try:
        return read_text_file(path, max_bytes=MAX_SECRET_FILE_BYTES).rstrip("\r\n")
    except TextFileError as error:
        raise ValueError(f"{key}: {error}") from None


class ConfigModel(BaseModel):
    """Base of every configuration section, ours and plugins': strict, frozen, secret files.

    Unknown keys are errors (a typo must not pass silently), and every ``Secret`` field ``x``
    may be given as ``x_file: PATH`` instead, relative to ``$CREDENTIALS_DIRECTORY`` when set
    (systemd ``LoadCredential=``), else to the configuration file's directory.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    def hidden_secrets(self) -> list[SecretValue]:
        """Secrets inside values that are not ``Secret`` fields (a URL's password), for the log
        masker; ``Secret`` fields are found without this."""
        return []

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        resolved = dict(data)
        for name, field in cls.model_fields.items():
            key = f"{name}_file"
            if key not in resolved or field.annotation not in (SecretValue, SecretValue | None):
                continue
            path_text = resolved.pop(key)
            if name in resolved:
                resolved[name] = _Unreadable(f"{key}: give either {name} or {key}, not both")
                continue
            try:
                resolved[name] = _read_secret_file(path_text, key, info)
            except ValueError as error:
                resolved[name] = _Unreadable(str(error))
        return resolved
