"""The systemd unit: verified and rated by ``systemd-analyze``, and saying what the daemon needs.

``systemd-analyze`` works here without a running systemd (offline security analysis, verify of a
unit file). It is required: CI installs Debian's ``systemd`` package when it is missing, so its
absence fails these tests rather than skipping them.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tcsms_poller.cli import build_parser
from tcsms_poller.config import ServerSettings, load_config
from tcsms_poller.exits import EX_CONFIG, EX_USAGE
from tcsms_poller.rlimits import connection_cap
from tcsms_poller.sdnotify import Notifier

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "tcsms-poller.service"
INSTALLED_BINARY = "/opt/tcsms-poller/bin/tcsms-poller"
MAX_EXPOSURE = 2.0


@dataclass(frozen=True, slots=True)
class Directive:
    """One ``Key=value`` line of the unit, with its section and whether a comment explains it."""

    section: str
    key: str
    value: str
    explained: bool


def parse_unit(text: str) -> list[Directive]:
    """The unit's directives in order; a directive is explained when a comment line precedes it
    in its paragraph (the lines between two blank lines or section headers)."""
    directives: list[Directive] = []
    section = ""
    explained = False
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):  # a continuation: the value goes on on the next line
            pending = line[:-1] + " "
            continue
        if not line:
            explained = False
        elif line.startswith(("#", ";")):
            explained = True
        elif line.startswith("[") and line.endswith("]"):
            section, explained = line[1:-1], False
        else:
            key, sep, value = line.partition("=")
            assert sep, f"not a Key=value line: {line!r}"
            directives.append(Directive(section, key.strip(), value.strip(), explained))
    return directives


def service_values(key: str) -> list[str]:
    """Every value ``key`` has in [Service], in order (some directives accumulate)."""
    return [
        d.value for d in parse_unit(UNIT.read_text()) if d.section == "Service" and d.key == key
    ]


def service_value(key: str) -> str:
    values = service_values(key)
    assert len(values) == 1, f"{key}= should appear once in [Service], found {values}"
    return values[0]


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    """The ``systemd-analyze`` binary, or a failure telling how to get it."""
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail(
            "systemd-analyze is missing: install Debian's systemd package "
            "(apt-get install -y systemd; .ci/run does it)"
        )
    return found


def analyze(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=60, check=False, env=env
    )


def test_the_security_exposure_is_at_most_2(systemd_analyze: str) -> None:
    """``systemd-analyze security`` rates the shipped unit 2.0 or lower ("OK")."""
    done = analyze(systemd_analyze, "security", "--offline=yes", "--threshold=20", str(UNIT))
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"Overall exposure level for tcsms-poller\.service: (\d+\.\d+)", done.stdout)
    assert match is not None, done.stdout + done.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, done.stdout


def test_the_unit_verifies_cleanly(systemd_analyze: str, tmp_path: Path) -> None:
    """``systemd-analyze verify`` finds nothing wrong once the ExecStart binary exists.

    The shipped unit names the /opt install; the copy verified here names this environment's
    console script, which is the only difference.
    """
    binary = Path(sys.executable).with_name("tcsms-poller")
    assert binary.is_file(), f"{binary} is missing: install the package into this environment"
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED_BINARY} " in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={INSTALLED_BINARY} ", f"ExecStart={binary} "))
    done = analyze(systemd_analyze, "verify", "--recursive-errors=yes", "--man=no", str(copy))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_verify_would_catch_a_missing_binary(systemd_analyze: str, tmp_path: Path) -> None:
    """The verify test can fail: a unit whose ExecStart binary does not exist is reported."""
    missing = tmp_path / "missing" / "tcsms-poller"
    copy = tmp_path / UNIT.name
    copy.write_text(
        UNIT.read_text().replace(f"ExecStart={INSTALLED_BINARY} ", f"ExecStart={missing} ")
    )
    done = analyze(systemd_analyze, "verify", "--recursive-errors=yes", "--man=no", str(copy))
    assert done.returncode != 0
    assert str(missing) in done.stderr


def test_the_daemon_speaks_the_notify_protocol_systemd_252_knows() -> None:
    """Type=notify (not notify-reload, which systemd 252 lacks); only the daemon may notify."""
    assert service_value("Type") == "notify"
    assert service_value("NotifyAccess") == "main"


def test_the_command_line_is_one_the_cli_accepts() -> None:
    """ExecStart runs ``run -c <configuration directory>/config.yaml`` from the /opt install."""
    argv = shlex.split(service_value("ExecStart"))
    assert argv[0] == INSTALLED_BINARY
    assert argv[1:] == ["run", "-c", "${CONFIGURATION_DIRECTORY}/config.yaml"]
    directory = Path("/etc") / service_value("ConfigurationDirectory")
    config = argv[3].replace("${CONFIGURATION_DIRECTORY}", str(directory))
    args = build_parser("run").parse_args([*argv[1:3], config])
    assert (args.command, args.config) == ("run", Path("/etc/tcsms-poller/config.yaml"))


def test_reload_is_sighup_to_the_main_process() -> None:
    """``systemctl reload`` sends SIGHUP, which reloads numbers and sinks."""
    assert service_value("ExecReload") == "/bin/kill -HUP $MAINPID"


def test_failures_restart_but_configuration_errors_do_not() -> None:
    """Restart on failure, except on EX_CONFIG (78) and EX_USAGE (2): a restart fixes neither."""
    assert service_value("Restart") == "on-failure"
    assert set(service_value("RestartPreventExitStatus").split()) == {str(EX_CONFIG), str(EX_USAGE)}


def test_the_watchdog_is_pinged_twice_per_period() -> None:
    """WatchdogSec=30s: the daemon derives a 15 s ping interval from $WATCHDOG_USEC."""
    assert service_value("WatchdogSec") == "30s"
    environ = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000"}
    notifier = Notifier.from_environ(environ)
    assert notifier.watchdog_interval == 15.0
    assert notifier.watchdog_timeout == 30.0  # a state write hung this long: no more pings


def test_the_open_files_limit_leaves_room_for_the_listeners_connections() -> None:
    """LimitNOFILE= sets soft and hard alike (the system-call filter forbids raising it from
    inside): at least twice the default ``max_connections``, which is capped at half of it."""
    limit = int(service_value("LimitNOFILE"))
    default = ServerSettings.model_fields["max_connections"].default
    assert connection_cap(default, limit) == default
    assert "@resources" in " ".join(service_values("SystemCallFilter"))


def test_it_runs_as_a_dynamic_user_with_its_own_directories() -> None:
    """No account to manage; /var/lib/tcsms-poller for state, /etc/tcsms-poller for config."""
    assert service_value("DynamicUser") == "yes"
    assert service_value("StateDirectory") == "tcsms-poller"
    assert service_value("ConfigurationDirectory") == "tcsms-poller"
    assert service_value("Environment") == "TCSMS_STATE_PATH=%S/tcsms-poller/state.db"


def test_the_tencent_secret_key_arrives_as_a_credential() -> None:
    """LoadCredential= names the Tencent secret key ``tencent-secret-key``."""
    credentials = dict(value.split(":", 1) for value in service_values("LoadCredential"))
    assert credentials["tencent-secret-key"].startswith("/etc/credstore/")


def test_a_config_written_for_the_unit_loads_under_its_environment(tmp_path: Path) -> None:
    """``secret_key_file: tencent-secret-key`` and ``${TCSMS_STATE_PATH}`` resolve as they will
    under systemd: from $CREDENTIALS_DIRECTORY and the unit's Environment=."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    secret = "the-secret-key-from-the-credential"
    for name in dict(value.split(":", 1) for value in service_values("LoadCredential")):
        (credentials / name).write_text(secret + "\n")
    name, _, value = service_value("Environment").partition("=")
    environ = {name: value.replace("%S", "/var/lib"), "CREDENTIALS_DIRECTORY": str(credentials)}
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        "tencent:\n"
        "  secret_id: AKIDEXAMPLE0000000000000000000000000\n"
        "  secret_key_file: tencent-secret-key\n"
        "apps:\n"
        "  - sms_sdk_app_id: '1400006666'\n"
        "state:\n"
        "  path: ${TCSMS_STATE_PATH}\n"
    )
    config = load_config(config_file, environ=environ)
    assert config.tencent.secret_key.reveal() == secret
    assert config.state.path == Path("/var/lib") / service_value("StateDirectory") / "state.db"


HARDENING = {
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "PrivateUsers": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "ProtectProc": "invisible",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "UMask": "0077",
}


@pytest.mark.parametrize(("key", "value"), HARDENING.items())
def test_the_sandbox_allows_the_network_and_the_state_directory_only(key: str, value: str) -> None:
    """Each hardening directive the daemon is known to run under is set as expected."""
    assert service_value(key) == value


def test_process_metrics_stay_visible() -> None:
    """ProcSubset=pid would hide /proc/stat and with it every process_* metric."""
    assert service_values("ProcSubset") == []


def test_every_directive_says_why() -> None:
    """A comment precedes every directive of [Unit] and [Service] in its paragraph."""
    unexplained = [
        f"{d.section}: {d.key}"
        for d in parse_unit(UNIT.read_text())
        if d.section in ("Unit", "Service") and d.key != "Description" and not d.explained
    ]
    assert unexplained == []


def test_the_parser_sees_continuations_and_paragraphs() -> None:
    """The helper that reads the unit: continued values join, blank lines end explanations."""
    text = "[Service]\n# why\nA=1 \\\n  2\nB=3\n\nC=4\n"
    assert parse_unit(text) == [
        Directive("Service", "A", "1  2", explained=True),
        Directive("Service", "B", "3", explained=True),
        Directive("Service", "C", "4", explained=False),
    ]
