"""The Dockerfile's essentials, read the way Docker reads it (no engine exists here).

Exec-form ENTRYPOINT and CMD so SIGTERM reaches the daemon, a numeric non-root USER, STOPSIGNAL,
an exec-form HEALTHCHECK running ``tcsms-poller healthcheck``, the state volume, pinned installs,
and a build context (``.dockerignore``) that holds what the build copies and nothing else.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tcsms_poller.cli import build_parser
from tcsms_poller.healthfile import HEALTH_URL_FILE

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CONFIG = "/etc/tcsms-poller/config.yaml"
STATE_DIR = "/var/lib/tcsms-poller"


@dataclass(frozen=True, slots=True)
class Instruction:
    """One instruction, continuations joined and comments dropped."""

    name: str
    args: str


@dataclass(slots=True)
class Stage:
    """A FROM and the instructions under it."""

    base: str
    alias: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, name: str) -> list[Instruction]:
        return [i for i in self.instructions if i.name == name]

    def last(self, name: str) -> Instruction:
        found = self.all(name)
        assert found, f"the final stage has no {name}"
        return found[-1]


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages in order. As Docker does: a trailing backslash continues the instruction, comment
    lines are dropped even inside a continuation, instruction names are case-insensitive."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        line = pending + stripped
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        if line:
            name, _, args = line.partition(" ")
            instructions.append(Instruction(name.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continuation"
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.name == "FROM":
            words = instruction.args.split()
            alias = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            stages.append(Stage(words[0], alias))
        else:
            assert stages, f"{instruction.name} before the first FROM"
            stages[-1].instructions.append(instruction)
    return stages


def exec_form(args: str) -> list[str]:
    """A JSON array of strings (exec form), or a failure naming the shell form found."""
    try:
        value = json.loads(args)
    except ValueError:
        pytest.fail(f"shell form, a shell would stand between Docker and the daemon: {args}")
    assert isinstance(value, list), args
    assert all(isinstance(item, str) for item in value), args
    return value


def split_flags(args: str) -> tuple[dict[str, str], str]:
    """Leading ``--flag=value`` options and the rest."""
    flags: dict[str, str] = {}
    rest = args
    while match := re.match(r"--([a-z-]+)(?:=(\S+))?\s+", rest):
        flags[match.group(1)] = match.group(2) or ""
        rest = rest[match.end() :]
    return flags, rest


def copy_sources(instruction: Instruction) -> tuple[dict[str, str], list[str]]:
    """A COPY's flags and its sources (every argument but the destination)."""
    flags, rest = split_flags(instruction.args)
    words = exec_form(rest) if rest.startswith("[") else rest.split()
    assert len(words) >= 2, f"COPY needs a source and a destination: {instruction.args}"
    return flags, words[:-1]


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception, pattern) per line, for ``is_ignored``."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((negated, _pattern(line.lstrip("!").strip().strip("/"))))
    return rules


def _pattern(glob: str) -> re.Pattern[str]:
    """Docker's matching: ``*`` and ``?`` stay within a path segment, ``**`` spans segments."""
    regex = ""
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif glob.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif glob[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif glob[i] == "?":
            regex, i = regex + "[^/]", i + 1
        elif glob[i] == "[":
            end = glob.index("]", i)
            regex, i = regex + glob[i : end + 1], end + 1  # a class, [^...] negated in both
        else:
            regex, i = regex + re.escape(glob[i]), i + 1
    return re.compile(regex)


def is_ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether ``path`` stays out of the context: the last rule matching it or a parent wins."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for negated, pattern in rules:
        if any(pattern.fullmatch(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    """The stage that becomes the image."""
    return stages[-1]


def test_the_base_is_slim_python_3_11_on_debian_12(stages: list[Stage]) -> None:
    """Every stage builds on python:3.11-slim-bookworm (the runtime venv points at its python)."""
    assert {stage.base.split("@")[0] for stage in stages} == {"python:3.11-slim-bookworm"}


def test_entrypoint_and_cmd_are_exec_form_running_the_daemon(final: Stage) -> None:
    """No shell in between: SIGTERM goes to the daemon and its exit code comes back unchanged."""
    assert exec_form(final.last("ENTRYPOINT").args) == ["tcsms-poller"]
    cmd = exec_form(final.last("CMD").args)
    assert cmd == ["run", "-c", CONFIG]
    args = build_parser("run").parse_args(cmd)
    assert (args.command, args.config) == ("run", Path(CONFIG))


def test_it_runs_as_a_numeric_non_root_user(final: Stage) -> None:
    """USER is numeric UID:GID, neither 0, so a runtime can enforce runAsNonRoot."""
    user = final.last("USER").args
    match = re.fullmatch(r"(\d+):(\d+)", user)
    assert match is not None, f"USER {user} is not numeric UID:GID"
    assert int(match.group(1)) != 0
    assert int(match.group(2)) != 0


def test_sigterm_is_the_stop_signal(final: Stage) -> None:
    """The signal the daemon handles as a graceful stop."""
    assert final.last("STOPSIGNAL").args == "SIGTERM"


def test_the_healthcheck_asks_the_daemon(final: Stage) -> None:
    """HEALTHCHECK runs ``tcsms-poller healthcheck`` in exec form, with bounded timing."""
    flags, rest = split_flags(final.last("HEALTHCHECK").args)
    assert rest.startswith("CMD "), rest
    command = exec_form(rest.removeprefix("CMD ").strip())
    assert command[:2] == ["tcsms-poller", "healthcheck"]
    args = build_parser("healthcheck").parse_args(command[1:])
    assert args.url_file == Path(STATE_DIR) / HEALTH_URL_FILE  # where the daemon writes it
    assert {"interval", "timeout", "start-period", "retries"} <= flags.keys()


def test_state_lives_in_a_volume_the_user_owns(final: Stage) -> None:
    """VOLUME /var/lib/tcsms-poller, created for the runtime user before it is declared (a fresh
    named volume copies that ownership), and the default state path (TCSMS_STATE_PATH) in it."""
    volumes = [
        exec_form(v.args) if v.args.startswith("[") else v.args.split() for v in final.all("VOLUME")
    ]
    assert [STATE_DIR] in volumes
    uid, gid = final.last("USER").args.split(":")
    names = [i.name for i in final.instructions]
    runs_before_volume = final.instructions[: names.index("VOLUME")]
    assert any(
        i.name == "RUN" and f"-o {uid} -g {gid}" in i.args and STATE_DIR in i.args
        for i in runs_before_volume
    )
    env = " ".join(i.args for i in final.all("ENV"))
    assert f"TCSMS_STATE_PATH={STATE_DIR}/state.db" in env


def test_the_user_comes_after_every_run(final: Stage) -> None:
    """Setup runs as root, the daemon does not: USER follows the last RUN of the final stage."""
    names = [i.name for i in final.instructions]
    assert names.index("USER") > max(n for n, name in enumerate(names) if name == "RUN")


def test_dependencies_are_pinned(stages: list[Stage]) -> None:
    """The package is installed from the context with constraints.txt, and no cache is kept."""
    installs = [i.args for stage in stages for i in stage.all("RUN") if "pip install" in i.args]
    assert installs, "no pip install in the Dockerfile"
    for command in installs:
        assert "-c constraints.txt" in command, command
        assert "--no-cache-dir" in command, command
        assert re.search(r"pip install [^&]* \.(\s|$)", command), (
            f"not the repo's package: {command}"
        )
    copied = [
        source
        for stage in stages
        for i in stage.all("COPY")
        for source in copy_sources(i)[1]
        if "from" not in copy_sources(i)[0]
    ]
    assert "constraints.txt" in copied


def test_every_copy_source_exists(stages: list[Stage]) -> None:
    """Sources from the context exist in the repo; sources from a stage name an earlier stage."""
    aliases = [stage.alias for stage in stages]
    for index, stage in enumerate(stages):
        for instruction in stage.all("COPY") + stage.all("ADD"):
            flags, sources = copy_sources(instruction)
            if "from" in flags:
                assert flags["from"] in aliases[:index], instruction.args
                continue
            for source in sources:
                assert (ROOT / source).exists(), f"COPY source {source} is not in the repo"


def test_the_build_context_holds_what_the_build_reads(stages: list[Stage]) -> None:
    """No file under a COPY source is kept out by .dockerignore (bytecode and egg-info aside)."""
    rules = dockerignore_rules(DOCKERIGNORE.read_text())
    for stage in stages:
        for instruction in stage.all("COPY"):
            flags, sources = copy_sources(instruction)
            if "from" in flags:
                continue
            for source in sources:
                root = ROOT / source
                files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
                for path in files:
                    relative = path.relative_to(ROOT).as_posix()
                    if "__pycache__" in path.parts or ".egg-info" in relative:
                        continue
                    assert not is_ignored(relative, rules), f"{relative} is not in the context"


def test_the_build_copies_what_pyproject_needs(stages: list[Stage]) -> None:
    """The readme and the package root that pyproject.toml names are copied into the build."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {project["project"]["readme"], "pyproject.toml"}
    needed |= set(project["tool"]["setuptools"]["packages"]["find"]["where"])
    copied = {
        source.strip("/").removeprefix("./")
        for i in stages[0].all("COPY")
        for source in copy_sources(i)[1]
    }
    assert needed <= copied


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        "tests/conftest.py",
        ".pytest_cache/README.md",
        ".mypy_cache/3.11/x.json",
        "state.db",
        "daemon/tcsms_poller/__pycache__/cli.cpython-311.pyc",
        "daemon/tcsms_poller/cli.pyc",
        "daemon/tcsms_poller.egg-info/PKG-INFO",
    ],
)
def test_the_build_context_leaves_out_the_rest(path: str) -> None:
    """The repository's history, virtualenvs, tests, caches and local state stay out."""
    assert is_ignored(path, dockerignore_rules(DOCKERIGNORE.read_text()))


def test_the_ignore_matcher_follows_docker() -> None:
    """``*`` stays in a segment, ``**`` spans them, the last rule wins, parents count."""
    rules = dockerignore_rules("*\n!src\nsrc/**/*.tmp\n!src/keep.tmp\n")
    assert is_ignored("a.txt", rules)
    assert is_ignored("dir/a.txt", rules)
    assert not is_ignored("src/a.py", rules)
    assert is_ignored("src/x/y/a.tmp", rules)
    assert is_ignored("src/a.tmp", rules)
    assert not is_ignored("src/keep.tmp", rules)


def test_the_parser_joins_continuations_and_drops_comments() -> None:
    """A comment inside a continued RUN is dropped, as Docker does."""
    stages = parse_dockerfile(
        '# header\nFROM base AS one\nrun a \\\n# note\n  && b\nFROM other\nCMD ["x"]\n'
    )
    assert [(s.base, s.alias) for s in stages] == [("base", "one"), ("other", None)]
    assert stages[0].instructions == [Instruction("RUN", "a && b")]
    assert stages[1].instructions == [Instruction("CMD", '["x"]')]
