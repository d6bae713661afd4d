"""pydantic's validation errors -> our one-line messages: ``file:line: key.path: what to do``.

pydantic says what is wrong in its own vocabulary ("Input should be a valid dictionary or
instance of TencentSettings"); an operator editing YAML needs the key, the line and the fix. An
unknown key gets the closest known one, since a typo is by far the likeliest cause.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Collection
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from tcsms_poller.config.source import Loc, Problem, SourceText

__all__ = ["describe_errors"]

# Error types whose input is a plain scalar of a non-secret field, safe and useful to echo.
_ECHO_INPUT = {
    "bool_parsing",
    "bool_type",
    "enum",
    "float_parsing",
    "float_type",
    "int_from_float",
    "int_parsing",
    "int_type",
    "literal_error",
    "string_type",
}
_URL_ERRORS = {"url_parsing", "url_scheme", "url_type", "url_syntax_violation", "url_too_long"}
_BOUNDS = {
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
}
_PLAIN = {
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "int_type": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
}
_SHAPES = {
    "dict_type": "must be a mapping of keys to values",
    "model_type": "must be a mapping of keys to values",
    "model_attributes_type": "must be a mapping of keys to values",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "missing": "is required",
}


def _unwrap(annotation: Any) -> Any:
    """The model inside ``X | None``, ``tuple[X, ...]`` and ``Annotated[X, ...]``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType, tuple, list):
            candidates = [arg for arg in typing.get_args(annotation) if arg not in (None, ...)]
            models = [arg for arg in candidates if _is_model(_unwrap(arg))]
            if not models:
                return None
            annotation = models[0]
        else:
            return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        current = _unwrap(field.annotation) if field is not None else None
        if not _is_model(current):
            return None
    return typing.cast(type[BaseModel], current)


def _unknown_key(model: type[BaseModel], loc: Loc) -> str:
    parent = _model_at(model, loc[:-1])
    key = str(loc[-1])
    if parent is None:
        return "unknown key"
    known = [name for name, field in parent.model_fields.items() if not field.exclude]
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key (known keys: {', '.join(known)})"


def _message(error: ErrorDetails, model: type[BaseModel]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return _unknown_key(model, tuple(error["loc"]))
    if kind in _SHAPES:
        return _SHAPES[kind]
    if kind in _URL_ERRORS:
        return "is not an http(s) URL like https://hooks.example.com/sms"
    if kind == "too_short" and error.get("ctx", {}).get("min_length") == 1:
        return "must list at least one entry"
    ctx = error.get("ctx", {})
    if kind in _BOUNDS:
        message = _BOUNDS[kind].format(**ctx)
    else:
        message = _PLAIN.get(kind, error["msg"]).removeprefix("Value error, ")
        # Whatever pydantic words that we did not: our voice ("must be"), not "Input should be".
        message = message.replace("Input should be", "must be").replace("Value should", "must")
    if kind == "string_pattern_mismatch":
        return f"invalid value {error['input']!r} (expected the pattern {error['ctx']['pattern']})"
    if kind in _ECHO_INPUT and isinstance(error["input"], str | int | float | bool):
        return f"{message} (got {error['input']!r})"
    return message


def describe_errors(
    error: ValidationError,
    source: SourceText,
    model: type[BaseModel],
    *,
    prefix: Loc = (),
    failed_elsewhere: Collection[Loc] = (),
) -> list[Problem]:
    """One problem per error; a list too short only because its items failed is not one."""
    details = error.errors(include_url=False)
    failed = [(*prefix, *item["loc"]) for item in details if item["type"] != "too_short"]
    failed.extend(failed_elsewhere)
    problems: list[Problem] = []
    for item in details:
        loc = (*prefix, *item["loc"])
        if source.has_failed(loc):
            continue  # the value's own problem (an unset variable, say) is already reported
        if item["type"] == "too_short" and any(
            len(other) > len(loc) and other[: len(loc)] == loc for other in failed
        ):
            continue
        problems.append(source.problem(*_at_named_key(loc, _message(item, model), item)))
    return problems


def _at_named_key(loc: Loc, message: str, error: ErrorDetails) -> tuple[Loc, str]:
    """A section-wide check that names one of the section's keys first (``key: why``), such as
    the ``*_file`` secrets, is reported at that key's line rather than the section's."""
    key, sep, why = message.partition(": ")
    if sep and isinstance(error["input"], dict) and key in error["input"]:
        return (*loc, key), why
    if sep and loc and key == f"{loc[-1]}_file":  # a secret whose file could not be read
        return (*loc[:-1], key), why
    return loc, message
