"""How command-line tools find a running `make run`, and how every entry point reports a
config error: one line, `config error: NAME: …`, exit status 2, no traceback.

`make run` starts its own PostgreSQL and Valkey on a Unix socket and a free port, so a
tool started in another terminal cannot guess them. Once they are up, `make run` writes
the URLs it gave its processes to `$VAR_DIR/services.json` (readable by its owner only:
the URLs may carry passwords) and removes the file when it stops. A tool reads it for the
settings its environment leaves unset; the environment always wins.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Iterator, NoReturn

from pydantic import ValidationError

from shared.config import ConfigError, Settings, describe, load_settings

FILE_NAME = "services.json"
# What `make run` may have chosen for its processes; anything else comes from the environment.
SHARED_SETTINGS = ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "STORAGE_URL")


def config_failure(message: str) -> NoReturn:
    sys.stderr.write(f"config error: {message}\n")
    raise SystemExit(2)


@contextlib.contextmanager
def config_errors() -> Iterator[None]:
    """Turn a ConfigError, or settings that do not validate, raised inside into the one
    line and exit status 2 (for code that builds Settings itself, like the bench)."""
    try:
        yield
    except ConfigError as error:
        config_failure(str(error))
    except ValidationError as error:
        if error.title != Settings.__name__:
            raise  # a request or a record, not the configuration
        config_failure(describe(error))


def require(settings: Settings, *names: str) -> Settings:
    """`settings`, or the one-line config error for the first of `names` that is unset."""
    with config_errors():
        for name in names:
            settings.require(name)
    return settings


def publish(var_dir: Path, env: dict) -> Path:
    """Record the running stack's service URLs for tools started beside it."""
    path = Path(var_dir) / FILE_NAME
    record = {"pid": os.getpid(), "urls": {name: env[name] for name in SHARED_SETTINGS if env.get(name)}}
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        json.dump(record, handle)
    path.chmod(0o600)
    return path


def withdraw(var_dir: Path) -> None:
    (Path(var_dir) / FILE_NAME).unlink(missing_ok=True)


def running(var_dir: Path) -> dict[str, str]:
    """The URLs of the `make run` using `var_dir`, or {} when none is running (no file, or
    the file of one that was killed before it could remove it)."""
    try:
        record = json.loads((Path(var_dir) / FILE_NAME).read_text())
        pid, urls = int(record["pid"]), dict(record["urls"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return {}
    except PermissionError:
        pass  # alive, someone else's
    return {name: str(value) for name, value in urls.items() if name in SHARED_SETTINGS}


def tool_settings(*needed: str) -> Settings:
    """Settings for a command-line tool that needs the services `needed` (setting names,
    lower case): the environment's, with what it leaves unset taken from the running
    `make run` in the same VAR_DIR. Exit 2 with one line saying what to do otherwise."""
    settings = load_settings()
    unset = [name.upper() for name in SHARED_SETTINGS if not getattr(settings, name.lower())]
    if any(not getattr(settings, name) for name in needed) and unset:
        found = running(settings.var_dir)
        overrides = {name.lower(): found[name] for name in unset if name in found}
        if overrides:
            settings = load_settings(**overrides)
    for name in needed:
        if not getattr(settings, name):
            config_failure(f"{name.upper()}: not set, and no `make run` is running with VAR_DIR={settings.var_dir}; "
                           f"start `make run` (in another terminal, same folder) or set {name.upper()}")
    return settings
