"""Settings: read from the environment and validated at start-up (no network)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.config import ROOT, ConfigError, Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
SETTING_NAMES = set(Settings.model_fields)


def is_setting(name: str) -> bool:
    # Settings are case-insensitive, so `port` would count as well as `PORT`.
    return name.lower() in SETTING_NAMES


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No setting comes from the machine running the tests."""
    for name in list(os.environ):
        if is_setting(name):
            monkeypatch.delenv(name)
    return monkeypatch


def clean_subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not is_setting(k)}
    env.update(extra)
    return env


# ---------------------------------------------------------------- Settings()


def test_defaults():
    s = Settings()
    assert s.database_url is None
    assert s.redis_url is None
    assert s.broker_url is None
    assert s.storage_url is None
    assert s.s3_endpoint_url is None
    assert s.var_dir == ROOT / "var" == REPO_ROOT / "var"
    assert s.model == "claude-sonnet-5-5"
    assert s.max_tokens == 1024
    assert s.max_context_tokens == 32_000
    assert s.port == 5000
    assert s.log_level == "INFO"


def test_values_come_from_the_environment_case_insensitively(clean_env):
    clean_env.setenv("PORT", "8080")
    clean_env.setenv("max_context_tokens", "4096")
    clean_env.setenv("LOG_LEVEL", "DEBUG")
    s = Settings()
    assert (s.port, s.max_context_tokens, s.log_level) == (8080, 4096, "DEBUG")


def test_settings_are_frozen():
    s = Settings()
    with pytest.raises(ValidationError):
        s.port = 1


def test_mysql_database_url_is_rejected(clean_env):
    clean_env.setenv("DATABASE_URL", "mysql://x")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert info.value.errors()[0]["loc"] == ("database_url",)


def test_postgres_scheme_is_normalised(clean_env):
    clean_env.setenv("DATABASE_URL", "postgres://u:p@db:5432/parley")
    s = Settings()
    assert s.database_url == "postgresql://u:p@db:5432/parley"
    assert s.sqlalchemy_url == "postgresql+psycopg://u:p@db:5432/parley"


@pytest.mark.parametrize("url", [
    "postgresql://u:p@db/parley",
    "postgresql+psycopg://u:p@db/parley",
])
def test_sqlalchemy_url_uses_psycopg(clean_env, url):
    clean_env.setenv("DATABASE_URL", url)
    assert Settings().sqlalchemy_url == "postgresql+psycopg://u:p@db/parley"


def test_sqlalchemy_url_without_database_url_names_the_variable():
    with pytest.raises(ConfigError, match=r"^DATABASE_URL: not set"):
        Settings().sqlalchemy_url


def test_broker_defaults_to_redis_url(clean_env):
    clean_env.setenv("REDIS_URL", "redis://localhost:6379/0")
    assert Settings().celery_broker_url == "redis://localhost:6379/0"
    clean_env.setenv("BROKER_URL", "redis://other:6379/1")
    assert Settings().celery_broker_url == "redis://other:6379/1"


def test_bad_redis_url_is_rejected(clean_env):
    clean_env.setenv("REDIS_URL", "http://localhost:6379")
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize("url", [
    "s3://bucket/prefix",
    "s3://bucket/deeper/prefix/",
    "s3://bucket",
    "/var/lib/parley/logs",
    "file:///var/lib/parley/logs",
])
def test_storage_url_accepted(clean_env, url):
    clean_env.setenv("STORAGE_URL", url)
    assert Settings().storage_url == url


@pytest.mark.parametrize("url, message", [
    ("s3://", "bucket"),
    ("s3:///prefix", "bucket"),
    ("var/logs", "absolute"),
    ("./logs", "absolute"),
    ("http://example.com/logs", "s3://"),
])
def test_storage_url_rejected(clean_env, url, message):
    clean_env.setenv("STORAGE_URL", url)
    with pytest.raises(ValidationError) as info:
        Settings()
    error = info.value.errors()[0]
    assert error["loc"] == ("storage_url",)
    assert message in error["msg"]


def test_load_settings_exits_2_with_one_line(clean_env, capsys):
    clean_env.setenv("PORT", "0")
    with pytest.raises(SystemExit) as info:
        load_settings()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: PORT: ")
    assert err.count("\n") == 1 and err.endswith("\n")


# ---------------------------------------------------------------- start-up failure


@pytest.mark.parametrize("name, value, expected", [
    ("MAX_CONTEXT_TOKENS", "abc", "valid integer"),
    ("PORT", "70000", "65535"),
    ("TEMPERATURE", "0.5", "no longer accepts sampling parameters"),
    ("CONTEXT_STRATEGY", "forget", "'truncate' or 'summarize'"),
])
def test_startup_failure_prints_one_line_and_exits_2(name, value, expected):
    result = subprocess.run(
        [sys.executable, "-c", "from shared.config import load_settings; load_settings()"],
        cwd=REPO_ROOT,
        env=clean_subprocess_env(**{name: value}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"config error: {name}")
    assert expected in lines[0]
    assert result.stdout == ""


def test_storage_url_file_with_host_is_rejected(clean_env):
    # urlparse("file://var/logs") has netloc "var" and path "/logs": without the check
    # the log store would silently be created at /logs rather than var/logs.
    clean_env.setenv("STORAGE_URL", "file://var/logs")
    with pytest.raises(ValidationError):
        Settings()


def test_temperature_is_a_bedrock_setting(clean_env):
    clean_env.setenv("TEMPERATURE", "0.3")
    clean_env.setenv("LLM_PROVIDER", "bedrock")
    assert Settings(_env_file=None).temperature == 0.3


def test_a_task_must_outlive_its_model_calls(clean_env):
    clean_env.setenv("MODEL_RETRY_BUDGET_SECONDS", "300")
    clean_env.setenv("MODEL_TIMEOUT_SECONDS", "120")
    clean_env.setenv("TASK_SOFT_TIME_LIMIT_SECONDS", "500")
    assert Settings(_env_file=None).task_soft_time_limit_seconds == 500
    clean_env.setenv("CONTEXT_STRATEGY", "summarize")  # one more call, the summary's, may come first
    with pytest.raises(ValidationError, match="TASK_SOFT_TIME_LIMIT_SECONDS: must exceed .* \\(540\\)"):
        Settings(_env_file=None)
