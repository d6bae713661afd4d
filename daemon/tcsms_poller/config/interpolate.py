"""``${VAR}``, ``${VAR:-default}`` and ``$$`` in configuration strings.

An unset variable without a default is an error rather than an empty string: an empty secret
would only fail much later, at Tencent, with a less helpful message. A ``$`` not followed by
``{`` or ``$`` is kept as it is, so ordinary text needs no escaping. As in the shell,
``${VAR:-default}`` takes the default when ``VAR`` is unset or empty (an empty ``Environment=``
line in a unit is a common way to "unset" a variable).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["InterpolationError", "interpolate"]

_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
    r"|(?P<invalid>\{[^}]*\}?))"
)


class InterpolationError(ValueError):
    """A reference that cannot be resolved or is malformed."""


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Replace every reference in ``text`` from ``environ``."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("invalid") is not None:
            raise InterpolationError(
                f"malformed reference ${match.group('invalid')}: write ${{NAME}} or "
                "${NAME:-default} (and $$ for a literal $)"
            )
        name = match.group("name")
        value = environ.get(name)
        default = match.group("default")
        if default is not None and not value:  # as in the shell: unset or empty
            return default
        if value is not None:
            return value
        raise InterpolationError(
            f"environment variable {name} is not set (write ${{{name}:-default}} for a default)"
        )

    return _REFERENCE.sub(replace, text)
