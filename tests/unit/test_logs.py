"""JSON log lines: one per event, stdlib and structlog alike, with the bound ids."""
from __future__ import annotations

import json
import logging

import pytest
import structlog

from shared.logs import bind_context, clear_context, configure_logging


@pytest.fixture()
def lines(capsys):
    """Configure logging for one test, then put the root logger back as it was."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level

    def configure(fmt: str = "json", process: str = ""):
        configure_logging("INFO", fmt, process)
        return lambda: capsys.readouterr().err.splitlines()

    yield configure
    root.handlers[:], level = saved
    root.setLevel(level)
    clear_context()
    structlog.reset_defaults()


def test_stdlib_lines_are_json_with_the_bound_ids(lines):
    read = lines()
    bind_context(request_id="r-1", job_id="j-1", user_id=None)
    logging.getLogger("parley.test").info("job %s done", "j-1", extra={"duration_ms": 12.5})
    [line] = read()
    event = json.loads(line)
    assert event["event"] == "job j-1 done"
    assert event["level"] == "info" and event["logger"] == "parley.test"
    assert event["request_id"] == "r-1" and event["job_id"] == "j-1" and "user_id" not in event
    assert event["duration_ms"] == 12.5 and event["timestamp"].endswith("Z")


def test_a_named_process_says_so_on_every_line(lines):
    read = lines(process="worker2")
    logging.getLogger("celery.app.trace").info("Task succeeded")
    structlog.get_logger("parley.test").info("claimed")
    assert [json.loads(line)["process"] for line in read()] == ["worker2", "worker2"]
    read = lines()
    logging.getLogger("parley.test").info("unnamed")
    assert "process" not in json.loads(read()[0])


def test_structlog_lines_and_cleared_context(lines):
    read = lines()
    bind_context(job_id="j-2")
    clear_context()
    structlog.get_logger("parley.test").warning("slow model", seconds=3)
    event = json.loads(read()[0])
    assert event == {**event, "event": "slow model", "seconds": 3, "level": "warning"}
    assert "job_id" not in event


def test_a_traceback_stays_on_one_line(lines):
    read = lines()
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("parley.test").exception("it failed")
    [line] = read()
    event = json.loads(line)
    assert "Traceback" in event["exception"] and "ValueError: boom" in event["exception"]


def test_third_party_noise_is_held_back(lines):
    read = lines()
    logging.getLogger("botocore.credentials").info("found credentials")
    assert read() == []


def test_console_format_reads_as_text(lines):
    read = lines("console")
    bind_context(job_id="j-3")
    logging.getLogger("parley.test").info("hello")
    [line] = read()
    assert "hello" in line and "job_id=j-3" in line and not line.startswith("{")
