"""Good configurations: defaults, interpolation, secret files, paths, rendering, fuzzing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcsms_poller.config import load_config, read_numbers_file, render_config
from tcsms_poller.exits import EX_CONFIG, ConfigError
from tests.support.cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = """\
tencent:
  secret_id: ${SECRET_ID}
  secret_key: ${SECRET_KEY:-fallback-key-123}
apps:
  - sms_sdk_app_id: 1400006666
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_documented_ones(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), environ={"SECRET_ID": "AKIDabc"})
    assert config.tencent.secret_id.reveal() == "AKIDabc"
    assert config.tencent.secret_key.reveal() == "fallback-key-123"
    assert config.tencent.endpoint == "https://sms.tencentcloudapi.com"
    assert config.tencent.rate_limits.model_dump() == {
        "PullSmsReplyStatus": 100,
        "PullSmsSendStatus": 100,
        "PullSmsSendStatusByPhoneNumber": 20,
        "PullSmsReplyStatusByPhoneNumber": 20,
        "CallbackStatusStatistics": 10,
        "ReportConversion": 1000,
        "SendSms": 3000,
    }
    app = config.apps[0]
    assert app.sms_sdk_app_id == "1400006666"  # an unquoted YAML number is read as the digits
    assert (app.replies.enabled, app.replies.interval) == (True, 2.0)
    assert (app.send_status.enabled, app.by_number.interval) == (False, 60.0)
    assert (app.by_number.lookback, app.statistics.interval) == (86_400.0, 300.0)
    assert config.state.dedupe_ttl == 8 * 86_400.0
    assert config.server is None
    assert [sink.type for sink in config.sinks] == ["stdout"]
    assert (config.log.level, config.log.format) == ("info", "auto")


def test_interpolation_forms(tmp_path: Path) -> None:
    text = MINIMAL + "state:\n  path: ${DIR}/s$$1/${NAME:-state}.db\n"
    config = load_config(write(tmp_path, text), environ={"SECRET_ID": "x", "DIR": "/data"})
    assert config.state.path == Path("/data/s$1/state.db")


def test_a_default_stands_in_for_an_empty_variable_too(tmp_path: Path) -> None:
    """As in the shell, ``${VAR:-default}`` takes the default when VAR is set but empty."""
    text = MINIMAL + "state:\n  path: /data/${NAME:-state}${EMPTY}.db\n"
    environ = {"SECRET_ID": "x", "SECRET_KEY": "", "NAME": "", "EMPTY": ""}
    config = load_config(write(tmp_path, text), environ=environ)
    assert config.tencent.secret_key.reveal() == "fallback-key-123"
    assert config.state.path == Path("/data/state.db")


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "numbers.txt").write_text("+8613711112222\n")
    text = MINIMAL + "    by_number: {numbers_file: numbers.txt}\nstate: {path: db/state.db}\n"
    config = load_config(write(tmp_path, text), environ={"SECRET_ID": "x"})
    assert config.state.path == tmp_path / "db" / "state.db"
    assert config.apps[0].by_number.numbers_file == tmp_path / "numbers.txt"


def test_secret_files_are_read_from_the_credentials_directory(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "tencent-key").write_text("key-from-credential\n")
    (credentials / "hook").write_text("hook-secret")
    text = (
        "tencent:\n  secret_id: id\n  secret_key_file: tencent-key\n"
        "apps:\n  - sms_sdk_app_id: '1400006666'\n"
        "sinks:\n  - type: http\n    url: http://127.0.0.1:9/\n    hmac_secret_file: hook\n"
    )
    environ = {"CREDENTIALS_DIRECTORY": str(credentials)}
    config = load_config(write(tmp_path, text), environ=environ)
    assert config.tencent.secret_key.reveal() == "key-from-credential"
    assert {secret.reveal() for secret in config.secrets()} == {
        "id",
        "key-from-credential",
        "hook-secret",
    }


def test_rendering_redacts_every_secret(tmp_path: Path) -> None:
    text = MINIMAL + (
        "server:\n  token: bearer-token-0123456789\n  callback_secret: callback-0123456789\n"
        "sinks:\n  - type: http\n    url: http://127.0.0.1:9/\n    hmac_secret: hmac-secret-value\n"
        "    headers: {Authorization: Bearer header-secret-value, X-Note: plain words}\n"
    )
    config = load_config(write(tmp_path, text), environ={"SECRET_ID": "AKIDsecretid"})
    rendered = render_config(config)
    for secret in config.secrets():
        assert secret.reveal() not in rendered
    data = yaml.safe_load(rendered)
    assert data["tencent"]["secret_id"] == "***"
    assert data["tencent"]["token"] == ""  # empty stays visibly empty
    assert data["server"]["token"] == "***"
    assert data["sinks"][0]["headers"] == {"Authorization": "***", "X-Note": "***"}
    assert data["sinks"][0]["url"] == "http://127.0.0.1:9/"
    # Each header's value; an Authorization header's token alone too (quoted without its
    # scheme, it is still masked), but not the words of another header.
    secrets = {secret.reveal() for secret in config.secrets()}
    assert {"header-secret-value", "plain words"} <= secrets
    assert "words" not in secrets
    assert len(config.secrets()) == 8


def test_numbers_file_skips_comments_blanks_and_repeats(tmp_path: Path) -> None:
    path = tmp_path / "numbers.txt"
    path.write_text("# tracked numbers\n+8613711112222\n\n+8613711113333  # vip\n+8613711112222\n")
    assert read_numbers_file(path) == ("+8613711112222", "+8613711113333")


def numbers_by_the_rules(text: str) -> tuple[str, ...] | int:
    """The numbers file rules applied a line at a time: the numbers, or the first bad line."""
    numbers: dict[str, None] = {}
    for line_number, line in enumerate(text.splitlines(), start=1):
        number = line.split("#", 1)[0].strip()
        if not number:
            continue
        if re.fullmatch(r"\+[1-9]\d{6,14}", number) is None:
            return line_number
        numbers[number] = None
    return tuple(numbers)


_number_lines = st.one_of(
    st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
    st.sampled_from(["+8613711112222", "+8613711113333"]),  # repeats
    st.sampled_from(
        [
            "",
            "# a comment",
            "+8613711114444 # vip",
            "13711112222",  # no +
            "+0137111122",  # leading zero
            "+86 137 1111 2222",
            "+861371111222233334",  # too long
            "+\u0668\u0666\u0661\u0663\u0667\u0661\u0661\u0661",  # Arabic-Indic digits
            "\u00a0+8613711115555",  # no-break space
            "+8613711116666\x0c",  # form feed: splitlines() ends the line there
        ]
    ),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(
        st.tuples(
            st.sampled_from(["", " ", "\t "]),
            _number_lines,
            st.sampled_from(["", "  ", "\t"]),
            st.sampled_from(["\n", "\r\n"]),
        ),
        max_size=12,
    ),
    last_newline=st.booleans(),
)
def test_numbers_file_reads_as_its_line_rules_say(
    tmp_path: Path, lines: list[tuple[str, str, str, str]], last_newline: bool
) -> None:
    """The fast path for plain files gives what the line-by-line rules give, errors included."""
    text = "".join("".join(parts) for parts in lines)
    if not last_newline:
        text = text.rstrip("\r\n")
    path = tmp_path / "numbers.txt"
    path.write_bytes(text.encode("utf-8"))
    expected = numbers_by_the_rules(text)
    if isinstance(expected, int):
        with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}:{expected}: "):
            read_numbers_file(path)
    else:
        assert read_numbers_file(path) == expected


def test_a_bad_number_in_a_plain_numbers_file_names_its_line(tmp_path: Path) -> None:
    """Without comments the file takes the fast path, which must still point at the line."""
    path = tmp_path / "numbers.txt"
    path.write_text("+8613711112222\n+8613711113333\n13711114444\n+8613711115555\n")
    with pytest.raises(ConfigError, match=r"numbers\.txt:3: '13711114444' is not an E\.164"):
        read_numbers_file(path)


EXAMPLE = ROOT / "daemon" / "tcsms_poller" / "config.example.yaml"
OWN_CREDENTIALS = {
    "TENCENTCLOUD_SECRET_ID": "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
    "TENCENTCLOUD_SECRET_KEY": "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
    "TCSMS_SMS_SDK_APP_ID": "1400123456",
}
EMULATOR_CREDENTIALS = {
    "TENCENTCLOUD_SECRET_ID": "AKIDEMULATOR000000000000000000000000",
    "TENCENTCLOUD_SECRET_KEY": "emulatorsecretkey000000000000000",
    "TCSMS_SMS_SDK_APP_ID": "1400006666",
}


def test_the_example_configuration_passes_check_config_with_its_variables_set() -> None:
    """``example-config`` prints the shipped file; with its three variables it is valid."""
    printed = run_cli("example-config")
    assert printed.returncode == 0
    assert printed.stdout == EXAMPLE.read_text()
    result = run_cli("check-config", "-c", str(EXAMPLE), env=OWN_CREDENTIALS)
    assert (result.returncode, result.stderr) == (0, "")
    rendered = yaml.safe_load(result.stdout)
    assert rendered["tencent"]["secret_key"] == "***"
    assert rendered["tencent"]["endpoint"] == "https://sms.tencentcloudapi.com"
    assert rendered["apps"][0]["by_number"]["numbers"] == []  # no made-up number is tracked


def test_the_example_has_no_fallback_credentials() -> None:
    """Required means required: without its variables the example names each missing one."""
    result = run_cli("check-config", "-c", str(EXAMPLE))
    assert result.returncode == EX_CONFIG
    missing = re.findall(r"environment variable (\w+) is not set", result.stderr)
    assert missing == ["TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY", "TCSMS_SMS_SDK_APP_ID"]


def test_check_config_warns_of_emulator_credentials_on_the_real_endpoint() -> None:
    result = run_cli("check-config", "-q", "-c", str(EXAMPLE), env=EMULATOR_CREDENTIALS)
    assert result.returncode == 0
    assert result.stderr == (
        "tcsms-poller: warning: tencent: the emulator's credentials with the endpoint "
        "https://sms.tencentcloudapi.com, which is not the emulator (every request will fail "
        "with AuthFailure): set your own secret_id and secret_key, or point endpoint at the "
        "emulator\n"
    )


def test_emulator_credentials_on_a_loopback_endpoint_are_fine() -> None:
    env = {**EMULATOR_CREDENTIALS, "TCSMS_ENDPOINT": "http://127.0.0.1:9000"}
    result = run_cli("check-config", "-q", "-c", str(EXAMPLE), env=env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_the_emulator_variant_of_the_example_needs_nothing_else(tmp_path: Path) -> None:
    """``example-config --emulator``: valid with no variable set, aimed at the emulator's
    default address with its credentials (so no warning), the state beside the file."""
    printed = run_cli("example-config", "--emulator")
    assert printed.returncode == 0
    path = write(tmp_path, printed.stdout)
    result = run_cli("check-config", "-c", str(path))
    assert (result.returncode, result.stderr) == (0, "")
    rendered = yaml.safe_load(result.stdout)
    assert rendered["tencent"]["endpoint"] == "http://127.0.0.1:9000"
    assert rendered["apps"][0]["sms_sdk_app_id"] == EMULATOR_CREDENTIALS["TCSMS_SMS_SDK_APP_ID"]
    assert rendered["state"]["path"] == str(tmp_path / "state.db")


def test_the_example_documents_every_option() -> None:
    """Every key of the model appears in config.example.yaml (commented or not)."""
    example = EXAMPLE.read_text()
    from tcsms_poller.config import Config
    from tcsms_poller.sinks.file import FileSettings
    from tcsms_poller.sinks.http import HttpSettings

    def keys(model: Any) -> set[str]:
        found: set[str] = set()
        for name, field in model.model_fields.items():
            if field.exclude:
                continue
            found.add(name)
            annotation = field.annotation
            for candidate in (annotation, *getattr(annotation, "__args__", ())):
                if isinstance(candidate, type) and hasattr(candidate, "model_fields"):
                    found |= keys(candidate)
        return found

    every = keys(Config) | keys(FileSettings) | keys(HttpSettings)
    missing = sorted(key for key in every if f"{key}:" not in example)
    assert missing == []


def test_check_config_exits_78_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("1400006666", "'14x'"))
    result = subprocess.run(
        [sys.executable, "-m", "tcsms_poller", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "SECRET_ID": "AKIDabc"},
    )
    assert result.returncode == EX_CONFIG
    assert result.stdout == ""
    assert result.stderr == (
        f"tcsms-poller: configuration error: {path}:5: apps[0].sms_sdk_app_id: "
        "invalid value '14x' (expected the pattern ^[0-9]{4,20}$)\n"
    )


# -- fuzzing: whatever the YAML, the answer is a Config or a ConfigError, never a crash ---------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False),
    st.sampled_from(["5s", "8d", "1MiB", "+8613711112222", "1400006666", "${X}", "$$", "stdout"]),
    st.text(max_size=20),
)
_keys = st.sampled_from(
    [
        "tencent",
        "apps",
        "sinks",
        "state",
        "server",
        "log",
        "secret_id",
        "secret_key",
        "type",
        "sms_sdk_app_id",
        "by_number",
        "numbers",
        "interval",
        "lookback",
        "path",
        "url",
        "level",
    ]
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=20,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=st.dictionaries(_keys, _values, max_size=6))
def test_any_document_gives_a_config_or_a_config_error(
    tmp_path: Path, document: dict[str, Any]
) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(document))
    try:
        load_config(path, environ={})
    except ConfigError as error:
        for line in str(error).splitlines():
            assert line.startswith(f"{path}")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=200))
def test_any_text_gives_a_config_or_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    with pytest.raises(ConfigError):
        load_config(path, environ={})


_TAGS = ["!!int", "!!float", "!!bool", "!!timestamp", "!!null", "!!str", "!!binary", "!!set", "!x"]
_hostile_scalars = st.one_of(
    st.builds(
        lambda tag, text: f"{tag} {json.dumps(text)}", st.sampled_from(_TAGS), st.text(max_size=8)
    ),
    st.builds(lambda digits: "9" * digits, st.integers(1, 6000)),
    st.sampled_from(["*a", "*b", "~", "1e999", "-.inf", ".nan", "0x1F", "0o17", "2026-13-45"]),
)


@st.composite
def hostile_documents(draw: st.DrawFn) -> str:
    """A configuration with tags, aliases (recursive ones too), merges and deep nesting."""
    depth = draw(st.sampled_from([1, 3, 63, 65, 20_000]))
    nested = "[" * depth + draw(_hostile_scalars) + "]" * depth
    fan = ", ".join(["*a"] * draw(st.integers(1, 12)))
    lines = [
        "tencent:",
        f"  secret_id: {draw(_hostile_scalars)}",
        "  secret_key: &a [x, x, x, x, x, x, x, x, x, x]",
        f"  timeout: {draw(_hostile_scalars)}",
        f"x1: &b [{fan}]",
        f"x2: [{', '.join(['*b'] * draw(st.integers(1, 12)))}]",
        f"x3: &c {draw(st.sampled_from(['[*c]', '{k: *c}', '{<<: *c}', '{<<: [*a]}', '[1]']))}",
        f"x4: {nested}",
        f"{draw(_hostile_scalars)}: 1",
        "apps:",
        f"  - sms_sdk_app_id: {draw(_hostile_scalars)}",
        f"    replies: {{interval: {draw(_hostile_scalars)}}}",
    ]
    return "\n".join(lines[:4] + draw(st.permutations(lines[4:9])) + lines[9:]) + "\n"


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=hostile_documents())
@pytest.mark.timeout(120)
def test_hostile_yaml_gives_a_config_error_quickly(tmp_path: Path, text: str) -> None:
    """Tags unfit for their value, huge numbers, alias bombs, cycles, deep nesting: an error
    naming the file, in well under a second, never a crash or a hang."""
    path = write(tmp_path, text)
    started = time.monotonic()
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert time.monotonic() - started < 5
    for line in str(raised.value).splitlines():
        assert line.startswith(f"{path}")


def test_json_is_yaml_too(tmp_path: Path) -> None:
    document = {
        "tencent": {"secret_id": "a", "secret_key": "b"},
        "apps": [{"sms_sdk_app_id": "1400006666"}],
    }
    config = load_config(write(tmp_path, json.dumps(document)), environ={})
    assert config.apps[0].sms_sdk_app_id == "1400006666"


def test_a_file_sink_is_refused_with_a_shared_state(tmp_path: Path) -> None:
    """Cluster mode (state.url): any daemon may drain a sink next, and a file cannot follow it
    to another machine; the one-line error says what to use instead."""
    text = (
        MINIMAL
        + "state:\n  url: postgresql://tcsms:pw@db:5432/tcsms\n"
        + "sinks:\n  - type: file\n    path: /tmp/records.jsonl\n"
    )
    with pytest.raises(ConfigError, match=r"a file sink cannot be used with state\.url") as caught:
        load_config(write(tmp_path, text), environ={"SECRET_ID": "AKIDabc"})
    message = str(caught.value)
    assert "use an http sink, stdout" in message
    assert "pw@" not in message
    config = load_config(
        write(tmp_path, MINIMAL + "state:\n  url: postgresql://tcsms:pw@db:5432/tcsms\n"),
        environ={"SECRET_ID": "AKIDabc"},
    )
    assert (config.state.instance_id, config.state.lease_ttl) == (None, 10.0)
