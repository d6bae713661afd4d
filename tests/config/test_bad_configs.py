# ruff: noqa: E501 - a table of exact messages reads best one case a line
"""Each bad configuration is refused with exactly the message an operator should see."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tcsms_poller.config import load_config
from tcsms_poller.exits import ConfigError

GOOD_HEAD = """\
tencent:
  secret_id: AKIDtest
  secret_key: s3cr3t-key-value
apps:
  - sms_sdk_app_id: "1400006666"
"""

# (name, YAML, the exact error text after "<file>:")
CASES = [
    ("empty", "", "the configuration is empty"),
    ("not a mapping", "- a\n- b\n", "1: the configuration must be a mapping of sections"),
    (
        "syntax",
        "tencent:\n  secret_id: [unclosed\n",
        "3: invalid YAML: expected ',' or ']', but got '<stream end>'",
    ),
    ("duplicate key", GOOD_HEAD + "log: {}\nlog: {}\n", "7: log: duplicate key"),
    ("missing tencent", "apps:\n  - sms_sdk_app_id: '1400006666'\n", "1: tencent: is required"),
    (
        "unknown section",
        GOOD_HEAD + "logs: {level: info}\n",
        "6: logs: unknown key (did you mean 'log'?)",
    ),
    (
        "unknown nested key",
        GOOD_HEAD + "    replies: {intervall: 2s}\n",
        "6: apps[0].replies.intervall: unknown key (did you mean 'interval'?)",
    ),
    (
        "missing secret",
        "tencent:\n  secret_id: a\napps:\n  - sms_sdk_app_id: '1400006666'\n",
        "1: tencent.secret_key: is required",
    ),
    (
        "empty secret",
        "tencent:\n  secret_id: a\n  secret_key: ''\napps:\n  - sms_sdk_app_id: '1400006666'\n",
        "3: tencent.secret_key: must not be empty",
    ),
    (
        "unset variable",
        "tencent:\n  secret_id: ${TCSMS_TEST_UNSET}\n  secret_key: k\napps:\n  - sms_sdk_app_id: '1400006666'\n",
        "2: tencent.secret_id: environment variable TCSMS_TEST_UNSET is not set (write ${TCSMS_TEST_UNSET:-default} for a default)",
    ),
    (
        "malformed reference",
        "tencent:\n  secret_id: ${1BAD}\n  secret_key: k\napps:\n  - sms_sdk_app_id: '1400006666'\n",
        "2: tencent.secret_id: malformed reference ${1BAD}: write ${NAME} or ${NAME:-default} (and $$ for a literal $)",
    ),
    (
        "no apps",
        "tencent: {secret_id: a, secret_key: b}\napps: []\n",
        "2: apps: must list at least one entry",
    ),
    (
        "app id letters",
        "tencent: {secret_id: a, secret_key: b}\napps:\n  - sms_sdk_app_id: abc\n",
        "3: apps[0].sms_sdk_app_id: invalid value 'abc' (expected the pattern ^[0-9]{4,20}$)",
    ),
    (
        "duplicate app",
        "tencent: {secret_id: a, secret_key: b}\napps:\n  - sms_sdk_app_id: '1400006666'\n  - sms_sdk_app_id: '1400006666'\n",
        "2: apps: sms_sdk_app_id 1400006666 is listed twice",
    ),
    (
        "lookback over 7 days",
        GOOD_HEAD + "    by_number: {lookback: 8d}\n",
        "6: apps[0].by_number.lookback: must be at most 7d (the API cannot look further back)",
    ),
    (
        "tracking give-up beyond what the API keeps",
        GOOD_HEAD + "    tracking: {give_up_after: 7d}\n",
        "6: apps[0].tracking.give_up_after: must be at most 6d (a receipt must still be pullable)",
    ),
    (
        "tracking first poll of zero",
        GOOD_HEAD + "    tracking: {first_poll: 0s}\n",
        "6: apps[0].tracking.first_poll: invalid duration '0s': must be greater than zero",
    ),
    (
        "statistics lookback over 32 days",
        GOOD_HEAD + "    statistics: {lookback: 33d}\n",
        "6: apps[0].statistics.lookback: must be at most 32d (the API's longest range)",
    ),
    (
        "duration without unit",
        GOOD_HEAD + "    replies: {interval: 5}\n",
        "6: apps[0].replies.interval: invalid duration 5: write it like 500ms, 5s, 2m, 1h or 7d",
    ),
    (
        "duration bad unit",
        GOOD_HEAD + "    replies: {interval: 5 weeks}\n",
        "6: apps[0].replies.interval: invalid duration '5 weeks': use a number and a unit: ms, s, m, h or d",
    ),
    (
        "zero duration",
        GOOD_HEAD + "    replies: {interval: 0s}\n",
        "6: apps[0].replies.interval: invalid duration '0s': must be greater than zero",
    ),
    (
        "bad number",
        GOOD_HEAD + "    by_number:\n      numbers: ['13711112222']\n",
        "7: apps[0].by_number.numbers[0]: '13711112222' is not an E.164 number like +8613711112222",
    ),
    (
        "number in other digits",
        GOOD_HEAD + "    by_number:\n      numbers: ['+\uff18\uff1613711112222']\n",
        "7: apps[0].by_number.numbers[0]: '+\uff18\uff1613711112222' is not an E.164 number like "
        "+8613711112222",
    ),
    (
        "enabled not bool",
        GOOD_HEAD + "    replies: {enabled: maybe}\n",
        "6: apps[0].replies.enabled: must be true or false (got 'maybe')",
    ),
    (
        "rate limit zero",
        "tencent:\n  secret_id: a\n  secret_key: b\n  rate_limits: {PullSmsReplyStatus: 0}\napps:\n  - sms_sdk_app_id: '1400006666'\n",
        "4: tencent.rate_limits.PullSmsReplyStatus: must be at least 1",
    ),
    (
        "rate limit typo",
        "tencent:\n  secret_id: a\n  secret_key: b\n  rate_limits: {PullSmsReplyStatu: 5}\napps:\n  - sms_sdk_app_id: '1400006666'\n",
        "4: tencent.rate_limits.PullSmsReplyStatu: unknown key (did you mean 'PullSmsReplyStatus'?)",
    ),
    (
        "endpoint not a url",
        "tencent:\n  secret_id: a\n  secret_key: b\n  endpoint: sms.example.com\napps:\n  - sms_sdk_app_id: '1400006666'\n",
        "4: tencent.endpoint: 'sms.example.com' is not an http(s) URL like https://sms.tencentcloudapi.com",
    ),
    (
        "dedupe ttl too short",
        GOOD_HEAD + "state: {dedupe_ttl: 1d}\n",
        "6: state.dedupe_ttl: must be at least 7d (the API hands out records up to 7 days old)",
    ),
    (
        "log level",
        GOOD_HEAD + "log: {level: loud}\n",
        "6: log.level: must be 'debug', 'info', 'warning' or 'error' (got 'loud')",
    ),
    (
        "section not a mapping",
        GOOD_HEAD + "state: /tmp/x.db\n",
        "6: state: must be a mapping of keys to values",
    ),
    (
        "server listen",
        GOOD_HEAD
        + "server: {listen: localhost, token: abcdefghijklmnop, callback_secret: abcdefghijklmnop}\n",
        "6: server.listen: 'localhost' is not HOST:PORT like 127.0.0.1:8787",
    ),
    (
        "server short token",
        GOOD_HEAD + "server: {token: short, callback_secret: abcdefghijklmnop}\n",
        "6: server.token: must be at least 16 characters",
    ),
    (
        "callback secret unsafe",
        GOOD_HEAD + "server: {token: abcdefghijklmnop, callback_secret: 'has/slash/abcdefgh'}\n",
        "6: server.callback_secret: must be at least 16 characters of A-Z a-z 0-9 . _ ~ - (it is a path)",
    ),
    (
        "max body",
        GOOD_HEAD
        + "server: {token: abcdefghijklmnop, callback_secret: abcdefghijklmnop, max_body: lots}\n",
        "6: server.max_body: invalid size 'lots': use a number and a unit: B, KB, MB, KiB, MiB, GiB",
    ),
    (
        "unknown sink type",
        GOOD_HEAD + "sinks:\n  - type: kafka\n",
        "7: sinks[0].type: unknown sink type 'kafka' (known: file, http, stdout)",
    ),
    (
        "sink without type",
        GOOD_HEAD + "sinks:\n  - path: /tmp/x\n",
        "7: sinks[0].type: is required (stdout, file, http, ...)",
    ),
    (
        "file sink without path",
        GOOD_HEAD + "sinks:\n  - type: file\n",
        "7: sinks[0].path: is required",
    ),
    (
        "sink unknown key",
        GOOD_HEAD + "sinks:\n  - type: http\n    url: http://127.0.0.1:1/\n    hmac_secrett: x\n",
        "9: sinks[0].hmac_secrett: unknown key (did you mean 'hmac_secret'?)",
    ),
    (
        "two sinks one name",
        GOOD_HEAD + "sinks:\n  - type: stdout\n  - type: stdout\n",
        "6: sinks: two sinks are named 'stdout'; give one a distinct name",
    ),
    ("no sinks", GOOD_HEAD + "sinks: []\n", "6: sinks: must list at least one entry"),
    (
        "sink secret and secret file",
        GOOD_HEAD + "sinks:\n  - type: http\n    url: http://127.0.0.1:1/\n    hmac_secret: x\n"
        "    hmac_secret_file: hook.txt\n",
        "10: sinks[0].hmac_secret_file: give either hmac_secret or hmac_secret_file, not both",
    ),
    (
        "secret and secret file",
        "tencent:\n  secret_id: a\n  secret_key: b\n  secret_key_file: k.txt\napps:\n  - sms_sdk_app_id: '1400006666'\n",
        "4: tencent.secret_key_file: give either secret_key or secret_key_file, not both",
    ),
    (
        "!!int",
        GOOD_HEAD + "log: {level: !!int notanumber}\n",
        "6: log.level: 'notanumber' is not an integer",
    ),
    ("!!float", GOOD_HEAD + "log: {level: !!float x}\n", "6: log.level: 'x' is not a number"),
    (
        "!!bool",
        GOOD_HEAD + "log: {level: !!bool maybe}\n",
        "6: log.level: 'maybe' is not a boolean (true or false)",
    ),
    (
        "!!timestamp",
        GOOD_HEAD + "log: {level: !!timestamp x}\n",
        "6: log.level: 'x' is not a timestamp",
    ),
    ("unknown tag", GOOD_HEAD + "log: {level: !loud x}\n", "6: log.level: unknown tag '!loud'"),
    (
        "5000-digit integer",
        GOOD_HEAD + "log: {level: " + "9" * 5000 + "}\n",
        "6: log.level: '" + "9" * 40 + "...' is not an integer",
    ),
    (
        "!!int secret",
        "tencent:\n  secret_id: a\n  secret_key: !!int hunter2-secret\napps:\n  - sms_sdk_app_id: '1400006666'\n",
        "3: tencent.secret_key: the value is not an integer",
    ),
    (
        "sink name with a slash",
        GOOD_HEAD + "sinks:\n  - type: stdout\n    name: ../../etc/x\n",
        "8: sinks[0].name: invalid value '../../etc/x' (expected the pattern ^([A-Za-z0-9][A-Za-z0-9._-]{0,63})?$)",
    ),
    ("tagged key", GOOD_HEAD + "!!int log: {}\n", "6: 'log' is not an integer"),
    (
        "list as key",
        GOOD_HEAD + "? [log]\n: {}\n",
        "6: keys must be strings, not a list or mapping",
    ),
    (
        "recursive alias",
        GOOD_HEAD + "log: &a [*a]\n",
        "6: invalid YAML: a recursive alias (an anchor used inside itself)",
    ),
    (
        "recursive mapping",
        GOOD_HEAD + "log: &a {level: *a}\n",
        "6: invalid YAML: a recursive alias (an anchor used inside itself)",
    ),
    (
        "recursive merge",
        GOOD_HEAD + "log: &a {<<: *a}\n",
        "6: invalid YAML: a recursive alias (an anchor used inside itself)",
    ),
    (
        "merge of a scalar",
        GOOD_HEAD + "log: {<<: 5}\n",
        "6: log: << must name a mapping or a list of mappings",
    ),
    (
        "20,000-deep list",
        GOOD_HEAD + "log: " + "[" * 20_000 + "]" * 20_000 + "\n",
        "6: invalid YAML: nested deeper than 64 levels",
    ),
    (
        "20,000-deep mapping",
        GOOD_HEAD + "log: " + "{a: " * 20_000 + "1" + "}" * 20_000 + "\n",
        "6: invalid YAML: nested deeper than 64 levels",
    ),
    (
        "billion laughs",
        GOOD_HEAD
        + "x0: &x0 [a, a, a, a, a, a, a, a, a]\n"
        + "".join(f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 9) + "]\n" for i in range(1, 9)),
        "6: invalid YAML: aliases expand to more than 10000 values",
    ),
    (
        "dedupe_ttl overflowing",
        GOOD_HEAD + "state: {dedupe_ttl: 999999999999999999d}\n",
        "6: state.dedupe_ttl: invalid duration '999999999999999999d': must be at most 366d",
    ),
    (
        "interval too short",
        GOOD_HEAD + "    replies: {interval: 0.1ms}\n",
        "6: apps[0].replies.interval: invalid duration '0.1ms': must be at least 1ms",
    ),
    (
        "size too large",
        GOOD_HEAD
        + "server: {token: 0123456789abcdefghij, callback_secret: 0123456789abcdefghij, max_body: 2GiB}\n",
        "6: server.max_body: invalid size '2GiB': must be at most 1GiB",
    ),
    (
        "max_body too small",
        GOOD_HEAD
        + "server: {token: 0123456789abcdefghij, callback_secret: 0123456789abcdefghij, max_body: 10B}\n",
        "6: server.max_body: must be at least 1024",
    ),
    (
        "size of 5000 digits",
        GOOD_HEAD
        + "server: {token: 0123456789abcdefghij, callback_secret: 0123456789abcdefghij, max_body: '"
        + "9" * 5000
        + "'}\n",
        "6: server.max_body: invalid size '" + "9" * 40 + "': too large",
    ),
    (
        "port out of range",
        GOOD_HEAD
        + "server: {listen: '127.0.0.1:99999', token: 0123456789abcdefghij, callback_secret: 0123456789abcdefghij}\n",
        "6: server.listen: port 99999 is out of range (0-65535; 0 picks a free one)",
    ),
    (
        "listen without port",
        GOOD_HEAD
        + "server: {listen: 'localhost', token: 0123456789abcdefghij, callback_secret: 0123456789abcdefghij}\n",
        "6: server.listen: 'localhost' is not HOST:PORT like 127.0.0.1:8787",
    ),
    (
        "CR LF in the token",
        GOOD_HEAD.replace(
            "  secret_key: s3cr3t-key-value\n",
            '  secret_key: s3cr3t-key-value\n  token: "a\\r\\nX-Evil: 1"\n',
        ),
        "4: tencent.token: must not contain control characters (a line break, a tab)",
    ),
    (
        "LF in a header value",
        GOOD_HEAD
        + 'sinks:\n  - type: http\n    url: https://hooks.example.com/sms\n    headers: {X-Key: "a\\nb"}\n',
        "9: sinks[0].headers.X-Key: must not contain control characters (a line break, a tab)",
    ),
    (
        "bad header name",
        GOOD_HEAD
        + "sinks:\n  - type: http\n    url: https://hooks.example.com/sms\n    headers: {'X Key': b}\n",
        "9: sinks[0].headers: 'X Key' is not an HTTP header name",
    ),
    (
        "relative sink URL",
        GOOD_HEAD + "sinks:\n  - type: http\n    url: hooks.example.com/sms\n",
        "8: sinks[0].url: is not an http(s) URL like https://hooks.example.com/sms",
    ),
    (
        "endpoint with a space",
        "tencent:\n  secret_id: a\n  secret_key: b\n  endpoint: 'https://sms.tencentcloudapi.com /'\napps:\n  - sms_sdk_app_id: '1400006666'\n",
        "4: tencent.endpoint: must not contain spaces or control characters",
    ),
]


@pytest.mark.parametrize(
    ("yaml_text", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_bad_configuration_names_file_line_and_key(
    tmp_path: Path, yaml_text: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TCSMS_TEST_UNSET", raising=False)
    path = tmp_path / "config.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    separator = ":" if expected[0].isdigit() else ": "
    assert str(raised.value).splitlines() == [f"{path}{separator}{expected}"]


def test_missing_secret_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "tencent:\n  secret_id: a\n  secret_key_file: nowhere.txt\n"
        "apps:\n  - sms_sdk_app_id: '1400006666'\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert str(raised.value) == (
        f"{path}:3: tencent.secret_key_file: cannot read {tmp_path}/nowhere.txt: "
        "No such file or directory"
    )


def test_bad_numbers_file_names_its_own_line(tmp_path: Path) -> None:
    (tmp_path / "numbers.txt").write_text("# tracked\n+8613711112222\n\n13711113333\n")
    path = tmp_path / "config.yaml"
    path.write_text(GOOD_HEAD + "    by_number: {numbers_file: numbers.txt}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert str(raised.value) == (
        f"{path}:6: apps[0].by_number.numbers_file: {tmp_path}/numbers.txt:4: "
        "'13711113333' is not an E.164 number like +8613711112222"
    )


def test_every_problem_is_reported_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        GOOD_HEAD + "    replies: {interval: soon}\nsinks:\n  - type: kafka\nlog: {format: xml}\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    lines = str(raised.value).splitlines()
    assert [line.split(": ", 2)[1] for line in lines] == [
        "apps[0].replies.interval",
        "sinks[0].type",
        "log.format",
    ]
    assert [line.split(": ", 1)[0] for line in lines] == [f"{path}:6", f"{path}:8", f"{path}:9"]


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert str(raised.value) == f"{path}: cannot read the configuration: No such file or directory"


def special_file(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A path that is no regular small file, and what the loader says about it."""
    if kind == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
        return path, "it is a FIFO, not a regular file"
    if kind == "directory":
        return tmp_path, "it is a directory, not a regular file"
    if kind == "device":
        return Path("/dev/zero"), "it is a character device, not a regular file"
    path = tmp_path / "huge"
    with path.open("wb") as huge:
        huge.truncate(64 * 1024 * 1024)  # sparse: larger than every limit, no disk used
    return path, "larger than"


KINDS = ["fifo", "directory", "device", "oversized"]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", KINDS)
def test_a_configuration_that_is_no_regular_small_file_is_refused(
    tmp_path: Path, kind: str
) -> None:
    """A FIFO would hang the loader, /dev/zero fill the memory: each is refused at once."""
    path, reason = special_file(tmp_path, kind)
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert str(raised.value).startswith(f"{path}: cannot read the configuration: {reason}")


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", KINDS)
def test_a_secret_file_that_is_no_regular_small_file_is_refused(tmp_path: Path, kind: str) -> None:
    target, reason = special_file(tmp_path, kind)
    path = tmp_path / "config.yaml"
    path.write_text(GOOD_HEAD.replace("secret_key: s3cr3t-key-value", f"secret_key_file: {target}"))
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert str(raised.value).startswith(
        f"{path}:3: tencent.secret_key_file: cannot read {target}: {reason}"
    )


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", KINDS)
def test_a_numbers_file_that_is_no_regular_small_file_is_refused(tmp_path: Path, kind: str) -> None:
    target, reason = special_file(tmp_path, kind)
    path = tmp_path / "config.yaml"
    path.write_text(GOOD_HEAD + f"    by_number: {{numbers_file: '{target}'}}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert str(raised.value).startswith(
        f"{path}:6: apps[0].by_number.numbers_file: {target}: cannot read: {reason}"
    )


def test_unset_variables_unreadable_secrets_and_schema_errors_come_at_once(
    tmp_path: Path,
) -> None:
    """One pass finds every kind of mistake, numbers files included; an unset variable hides
    nothing."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "tencent:\n"
        "  secret_id: ${TCSMS_TEST_UNSET}\n"
        "  secret_key_file: nowhere.txt\n"
        "  timeout: soon\n"
        "apps:\n"
        "  - sms_sdk_app_id: 'x'\n"
        "    by_number: {numbers_file: numbers.txt}\n"
        "state:\n"
        "  path: ${TCSMS_TEST_UNSET_TOO}\n"
        "log: {level: !!int loud}\n"
    )
    (tmp_path / "numbers.txt").write_text("+8613711112222\n13711113333\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert [line.split(": ", 2)[:2] for line in str(raised.value).splitlines()] == [
        [f"{path}:2", "tencent.secret_id"],
        [f"{path}:3", "tencent.secret_key_file"],
        [f"{path}:4", "tencent.timeout"],
        [f"{path}:6", "apps[0].sms_sdk_app_id"],
        [f"{path}:7", "apps[0].by_number.numbers_file"],
        [f"{path}:9", "state.path"],
        [f"{path}:10", "log.level"],
    ]


def test_merge_keys_are_overridden_by_the_mappings_own_keys(tmp_path: Path) -> None:
    """YAML's rule for ``<<``: the mapping's own keys win, earlier merged mappings beat later."""
    path = tmp_path / "config.yaml"
    path.write_text(
        GOOD_HEAD
        + "    replies: &fast {enabled: true, interval: 1s}\n"
        + "    send_status:\n      <<: [{interval: 3s}, *fast]\n      enabled: false\n"
        + "    statistics:\n      <<: *fast\n      interval: 9m\n"
    )
    app = load_config(path, environ={}).apps[0]
    assert (app.send_status.enabled, app.send_status.interval) == (False, 3.0)
    assert (app.statistics.enabled, app.statistics.interval) == (True, 540.0)
