"""Logs as operators tail them: line shape, levels, formats, journald (masking: test_masking.py)."""

from __future__ import annotations

import calendar
import io
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import pytest
import structlog
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tcsms_poller.logs import configure_logging, get_logger, lost_lines
from tcsms_poller.metrics import Metrics
from tests.support.log_capture import captured_logs, json_lines, output

SECRET = "Kx9vQ2mZt7LwR4pN"  # shaped like a Tencent SecretKey
PHONE = "+8613711112222"
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

log = get_logger("tcsms_poller.tests.logs")  # created at import, before any configuration


class TerminalBuffer(io.StringIO):
    """A StringIO that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class BrokenStream(io.StringIO):
    """A stream whose reader has gone away."""

    def write(self, text: str) -> int:
        raise BrokenPipeError


def log_chained_failure(log_exception: Callable[[str], object]) -> None:
    """Log, from inside ``except``, an error whose message and cause carry a secret and a number."""
    try:
        try:
            raise ConnectionError(f"refused with key {SECRET}")
        except ConnectionError as cause:
            raise RuntimeError(f"delivery to {PHONE} failed") from cause
    except RuntimeError:
        log_exception("sink.failed")


def journal_environ(stream: TextIO) -> dict[str, str]:
    status = os.fstat(stream.fileno())
    return {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}


# --- line shape ---------------------------------------------------------------------------------


def test_json_line_has_ts_level_event_logger_and_context() -> None:
    """A JSON line carries ts, level, event, logger and the bound context."""
    with captured_logs() as out:
        log.bind(app_id="1400006666", worker="replies").info("poll.completed", records=3)
    [line] = json_lines(out)
    assert TS.match(line["ts"])
    assert line["level"] == "info"
    assert line["event"] == "poll.completed"
    assert line["logger"] == "tcsms_poller.tests.logs"
    assert (line["app_id"], line["worker"], line["records"]) == ("1400006666", "replies", 3)


def test_json_line_starts_with_the_stable_keys() -> None:
    """ts, level, event and logger lead every line, whatever was bound first."""
    with captured_logs() as out:
        log.bind(zeta=1, app_id="1").warning("sink.retry_scheduled", sink="http")
    assert list(json_lines(out)[0])[:4] == ["ts", "level", "event", "logger"]


def test_ts_is_now_in_utc() -> None:
    """ts is the UTC time of the call, to the millisecond."""
    before = time.time()
    with captured_logs() as out:
        log.info("poll.completed")
    after = time.time()
    stamp = calendar.timegm(time.strptime(json_lines(out)[0]["ts"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert int(before) <= stamp <= after


def test_every_event_is_one_line() -> None:
    """Newlines in values and tracebacks stay inside the JSON object."""
    with captured_logs() as out:
        log.info("tencent.response", body="line one\nline two")
        log_chained_failure(log.exception)
    assert len(output(out).splitlines()) == 2
    assert "RuntimeError" in json_lines(out)[1]["exception"]


def test_lines_go_to_stdout_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a stream, JSON lines go to whatever sys.stdout is when they are written."""
    with captured_logs():
        configure_logging(fmt="json", environ={})
        log.info("poll.completed")
    assert json.loads(capsys.readouterr().out)["event"] == "poll.completed"


def test_lines_from_many_threads_never_interleave() -> None:
    """structlog and stdlib lines written concurrently each stay one whole JSON object."""

    def write(worker: int) -> None:
        for index in range(100):
            log.info("poll.completed", worker=worker, index=index, padding="x" * 500)
            logging.getLogger("uvicorn.error").warning("worker %d line %d", worker, index)

    with captured_logs() as out:
        threads = [threading.Thread(target=write, args=(worker,)) for worker in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(json_lines(out)) == 8 * 100 * 2


def test_contextvars_are_merged() -> None:
    """Context bound with structlog.contextvars (e.g. a request id) appears in the line."""
    structlog.contextvars.bind_contextvars(request_id="9a7d-42")
    try:
        with captured_logs() as out:
            log.info("tencent.request")
    finally:
        structlog.contextvars.clear_contextvars()
    assert json_lines(out)[0]["request_id"] == "9a7d-42"


def test_structlog_get_logger_takes_the_same_path() -> None:
    """Code that asks structlog directly gets the same shape, logger name and masking."""
    with captured_logs(secrets=[SECRET]) as out:
        structlog.get_logger("tcsms_poller.sinks").info("sink.opened", key=SECRET)
    [line] = json_lines(out)
    assert (line["logger"], line["key"]) == ("tcsms_poller.sinks", "***")
    assert TS.match(line["ts"])


def test_structlog_capture_logs_sees_our_loggers() -> None:
    """structlog.testing.capture_logs works on our loggers: it edits the one processor list."""
    with captured_logs(), structlog.testing.capture_logs() as captured:
        log.info("poll.completed", records=3)
    assert captured == [{"event": "poll.completed", "records": 3, "log_level": "info"}]


def test_a_broken_stream_never_raises_into_the_caller() -> None:
    """Logging to a stream whose reader is gone does not crash the worker that logs."""
    with captured_logs(stream=BrokenStream()):
        log.error("sink.failed")
        logging.getLogger("uvicorn.error").error("accept failed")


def fill_pipe(write_fd: int) -> None:
    """Write to a non-blocking pipe until it is full."""
    while True:
        try:
            os.write(write_fd, b"\n" * 65_536)
        except BlockingIOError:
            return


def read_pipe(read_fd: int) -> bytes:
    """Everything a non-blocking pipe holds now."""
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(read_fd, 65_536)
        except BlockingIOError:
            return b"".join(chunks)
        chunks.append(chunk)


def lost_lines_metric() -> float:
    """``tcsms_poller_log_lines_lost_total`` as a scrape of /metrics shows it."""
    text = generate_latest(Metrics().registry).decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    return families["tcsms_poller_log_lines_lost"].samples[0].value


def test_lines_lost_to_a_full_pipe_are_counted_and_reported() -> None:
    """A full non-blocking pipe costs a line, not a stall: counted, and told once it drains."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    try:
        with open(write_fd, "w", encoding="utf-8") as stream, captured_logs(stream=stream):
            log.info("daemon.ready")  # written: nothing lost before this test is left to report
            read_pipe(read_fd)
            lost_before = lost_lines()
            fill_pipe(write_fd)
            log.info("poll.completed", worker="replies:1")
            assert lost_lines() == lost_before + 1
            assert lost_lines_metric() == lost_before + 1

            read_pipe(read_fd)
            log.info("poll.completed", worker="replies:2")
            lines = [json.loads(line) for line in read_pipe(read_fd).split(b"\n") if line]
    finally:
        os.close(read_fd)
    assert [line["event"] for line in lines][-2:] == ["poll.completed", "log.lines_lost"]
    assert lines[-2]["worker"] == "replies:2"
    assert (lines[-1]["level"], lines[-1]["lines"]) == ("warning", 1)
    assert lost_lines() == lost_before + 1


def test_unknown_level_is_rejected() -> None:
    """A typo in log.level is an error, not silence."""
    with pytest.raises(ValueError, match="verbose"):
        configure_logging(level="verbose", stream=io.StringIO())


# --- levels -------------------------------------------------------------------------------------


def test_debug_is_dropped_at_info() -> None:
    """At info, debug calls write nothing."""
    with captured_logs(level="info") as out:
        log.debug("tencent.request")
    assert output(out) == ""


def test_debug_is_written_at_debug() -> None:
    """At debug, per-request lines appear."""
    with captured_logs(level="debug") as out:
        log.debug("tencent.request", action="PullSmsReplyStatus")
    assert json_lines(out)[0]["level"] == "debug"


def test_a_filtered_call_does_no_processing() -> None:
    """Below the level nothing is rendered, so hot-path debug calls cost a bare call."""
    touched: list[str] = []

    class Spy:
        def __repr__(self) -> str:
            touched.append("repr")
            return "Spy()"

    with captured_logs(level="info"):
        log.debug("tencent.request", spy=Spy())
        assert touched == []
        log.info("tencent.request", spy=Spy())
    assert touched == ["repr"]


def test_reconfiguring_changes_the_level_of_loggers_already_bound() -> None:
    """A reload to debug reaches loggers (and their bound children) created before it."""
    bound = log.bind(worker="replies")
    with captured_logs(level="info") as out:
        bound.debug("before.reload")
        configure_logging(level="debug", fmt="json", stream=out, environ={})
        bound.debug("after.reload")
    assert [line["event"] for line in json_lines(out)] == ["after.reload"]


def test_reconfiguring_applies_new_secrets_to_existing_loggers() -> None:
    """A reload with a rotated secret masks the new value in loggers created before it."""
    rotated = "Zr8wPq3nVx6tYb1M"
    with captured_logs(secrets=[SECRET]) as out:
        configure_logging(fmt="json", secrets=[rotated], stream=out, environ={})
        log.info("config.reloaded", key=rotated)
    assert rotated not in output(out)


def test_reconfiguring_does_not_duplicate_stdlib_lines() -> None:
    """Configuring twice still gives one line per stdlib record."""
    with captured_logs() as out:
        configure_logging(fmt="json", stream=out, environ={})
        logging.getLogger("uvicorn.error").warning("once")
    assert len(json_lines(out)) == 1


def test_httpx_is_quiet_at_info() -> None:
    """httpx's per-request info lines are dropped at info."""
    with captured_logs(level="info") as out:
        logging.getLogger("httpx").info("HTTP Request: POST https://sms.tencentcloudapi.com")
    assert output(out) == ""


def test_httpx_requests_are_shown_at_debug() -> None:
    """At debug, httpx's request lines come through, httpcore's socket chatter does not."""
    with captured_logs(level="debug") as out:
        logging.getLogger("httpx").info("HTTP Request: POST https://sms.tencentcloudapi.com")
        logging.getLogger("httpcore.connection").debug("connect_tcp.started")
    assert [line["logger"] for line in json_lines(out)] == ["httpx"]


@pytest.mark.parametrize("name", ["asyncio", "uvicorn", "uvicorn.access", "uvicorn.error"])
def test_library_chatter_is_quiet_at_info_and_their_warnings_pass(name: str) -> None:
    """asyncio's and uvicorn's info lines are debug detail for us; their warnings are not."""
    with captured_logs(level="info") as out:
        logging.getLogger(name).info("Using selector: EpollSelector")
        logging.getLogger(name).warning("Executing <Task> took 0.2 seconds")
    assert [line["level"] for line in json_lines(out)] == ["warning"]


def test_library_warnings_are_dropped_at_error() -> None:
    """log.level: error means error, for httpx and asyncio too."""
    with captured_logs(level="error") as out:
        logging.getLogger("httpx").warning("retrying")
        logging.getLogger("asyncio").error("Task exception was never retrieved")
    assert [line["logger"] for line in json_lines(out)] == ["asyncio"]


def test_stdlib_record_has_the_same_shape() -> None:
    """A uvicorn record gets ts, level, event (the formatted message) and its logger name."""
    with captured_logs() as out:
        logging.getLogger("uvicorn.error").warning("Invalid HTTP request %s", "received.")
    [line] = json_lines(out)
    assert TS.match(line["ts"])
    assert (line["level"], line["event"], line["logger"]) == (
        "warning",
        "Invalid HTTP request received.",
        "uvicorn.error",
    )


# --- formats ------------------------------------------------------------------------------------


def test_auto_is_console_with_colors_on_a_terminal() -> None:
    """On a TTY, auto renders for humans, in color."""
    with captured_logs(fmt="auto", stream=TerminalBuffer()) as out:
        log.info("poll.completed", records=3)
    text = output(out)
    assert "poll.completed" in text
    assert "\x1b[" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


@pytest.mark.parametrize(("no_color", "coloured"), [("1", False), ("", True)])
def test_no_color_turns_colours_off_on_a_terminal(no_color: str, coloured: bool) -> None:
    """NO_COLOR set and not empty: console lines without escape codes (https://no-color.org)."""
    with captured_logs(fmt="auto", stream=TerminalBuffer(), environ={"NO_COLOR": no_color}) as out:
        log.info("poll.completed", records=3)
    text = output(out)
    assert "poll.completed" in text
    assert ("\x1b[" in text) is coloured


def test_auto_is_json_when_not_a_terminal() -> None:
    """Into a pipe or file, auto writes JSON."""
    with captured_logs(fmt="auto") as out:
        log.info("poll.completed")
    assert json_lines(out)[0]["event"] == "poll.completed"


def test_console_shows_logger_and_context_without_colors_off_a_terminal() -> None:
    """Forced console into a non-terminal: readable key=value text, no escape codes."""
    with captured_logs(fmt="console") as out:
        log.info("poll.completed", records=3)
    text = output(out)
    assert "[tcsms_poller.tests.logs]" in text
    assert "records=3" in text
    assert "\x1b[" not in text


# --- journald -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "prefix"),
    [
        ("debug", "<7>"),
        ("info", "<6>"),
        ("warning", "<4>"),
        ("error", "<3>"),
        ("exception", "<3>"),
        ("critical", "<2>"),
    ],
)
def test_journald_lines_start_with_the_syslog_priority(
    tmp_path: Path, method: str, prefix: str
) -> None:
    """On the journal's stream each line is prefixed so journalctl -p filters by level."""
    with (tmp_path / "journal").open("w+") as stream:
        with captured_logs(level="debug", stream=stream, environ=journal_environ(stream)):
            getattr(log, method)("poll.completed")
        stream.seek(0)
        text = stream.read()
    assert text.startswith(prefix + "{")
    assert json.loads(text[len(prefix) :])["level"] == method.replace("exception", "error")


def test_journald_lines_leave_the_time_to_the_journal(tmp_path: Path) -> None:
    """Under journald the JSON has no ts: the journal stamps each entry itself."""
    with (tmp_path / "journal").open("w+") as stream:
        with captured_logs(stream=stream, environ=journal_environ(stream)):
            log.info("poll.completed")
        stream.seek(0)
        line = json.loads(stream.read()[3:])
    assert "ts" not in line
    assert line["event"] == "poll.completed"


def test_journald_prefixes_stdlib_records(tmp_path: Path) -> None:
    """uvicorn's and httpx's records get their priority too."""
    with (tmp_path / "journal").open("w+") as stream:
        with captured_logs(stream=stream, environ=journal_environ(stream)):
            logging.getLogger("uvicorn.error").error("boom")
        stream.seek(0)
        assert stream.read().startswith('<3>{"level":"error","event":"boom"')


def test_journald_prefixes_every_line_of_a_console_traceback(tmp_path: Path) -> None:
    """Forced console output under journald: each physical line carries the priority."""
    with (tmp_path / "journal").open("w+") as stream:
        with captured_logs(fmt="console", stream=stream, environ=journal_environ(stream)):
            log_chained_failure(log.exception)
        stream.seek(0)
        lines = stream.read().splitlines()
    assert len(lines) > 5
    assert all(line.startswith("<3>") for line in lines)


def test_journal_stream_naming_another_file_is_ignored(tmp_path: Path) -> None:
    """An inherited JOURNAL_STREAM for a stream we do not write to changes nothing."""
    with (tmp_path / "other").open("w") as other, (tmp_path / "out").open("w+") as stream:
        with captured_logs(stream=stream, environ=journal_environ(other)):
            log.info("poll.completed")
        stream.seek(0)
        line = json.loads(stream.read())
    assert TS.match(line["ts"])


@pytest.mark.parametrize("value", ["", "12", "a:b", "1:2:3", ":"])
def test_malformed_journal_stream_is_ignored(tmp_path: Path, value: str) -> None:
    """A JOURNAL_STREAM that is not dev:inode means plain JSON."""
    with (tmp_path / "out").open("w+") as stream:
        with captured_logs(stream=stream, environ={"JOURNAL_STREAM": value}):
            log.info("poll.completed")
        stream.seek(0)
        assert stream.read().startswith("{")


def test_journal_stream_without_a_file_descriptor_is_ignored() -> None:
    """A stream without fileno() (a buffer) is never the journal."""
    with captured_logs(environ={"JOURNAL_STREAM": "1:2"}) as out:
        log.info("poll.completed")
    assert output(out).startswith("{")


def test_library_request_lines_only_at_debug() -> None:
    """httpx and uvicorn log each request at info; for us that is debug detail."""
    with captured_logs(level="info") as out:
        logging.getLogger("uvicorn.access").info('10.0.0.1 - "GET /healthz HTTP/1.1" 200')
        logging.getLogger("httpx").info("HTTP Request: POST http://127.0.0.1/ 200")
        logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    assert [line["event"] for line in json_lines(out)] == ["Invalid HTTP request received."]
