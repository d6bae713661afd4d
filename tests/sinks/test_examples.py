"""Every built-in sink's docstring carries a YAML example that its own Config model accepts."""

from __future__ import annotations

import re
import sys
import textwrap
from importlib.metadata import entry_points
from typing import Any

import pytest
import yaml

from tcsms_poller.sinks.registry import ENTRY_POINT_GROUP, load_sink_type

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
BUILT_IN = sorted(
    ep.name
    for ep in entry_points(group=ENTRY_POINT_GROUP)
    if ep.dist is not None and ep.dist.name == "tcsms-poller"
)


def example_of(docstring: str) -> dict[str, Any]:
    """The YAML block after ``Example::``, with ``${VAR}`` placeholders filled with dummies."""
    after = docstring.split("Example::", 1)[1]
    block = re.match(r"\s*\n((?:[ \t]+\S.*\n|[ \t]*\n)+)", after)
    assert block is not None, "Example:: must be followed by an indented block"
    text = _PLACEHOLDER.sub(lambda m: m.group(2) or f"dummy-{m.group(1).lower()}", block.group(1))
    document: dict[str, Any] = yaml.safe_load(textwrap.dedent(text))
    return document


def test_the_built_in_sinks_are_registered() -> None:
    """stdout, file and http come with the package, through the same entry points as plugins."""
    assert {"stdout", "file", "http"} <= set(BUILT_IN)


@pytest.mark.parametrize("name", BUILT_IN)
def test_the_docstring_example_validates(name: str) -> None:
    """Each sink entry of the example is accepted by the sink type's Config model."""
    loaded = load_sink_type(name)
    module = sys.modules[loaded.factory.__module__]
    assert module.__doc__ is not None
    example = example_of(module.__doc__)
    sinks = example["sinks"]
    assert sinks, "the example configures at least one sink"
    for entry in sinks:
        assert entry["type"] == name
        config = loaded.factory.Config.model_validate(entry)
        assert config.type == name


def test_placeholders_are_filled() -> None:
    """The example parser substitutes variables (and keeps defaults) before validating."""
    doc = "Example::\n\n    sinks:\n      - {a: ${A}, b: '${B:-x}'}\n\nAfter.\n"
    assert example_of(doc) == {"sinks": [{"a": "dummy-a", "b": "x"}]}
