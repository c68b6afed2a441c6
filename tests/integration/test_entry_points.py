"""What a newcomer meets before anything runs (real processes and sockets, no backing
services): tools find a running `make run`, a config error is one line and exit status
2, a taken port is named before anything starts."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from devstack.ports import free_port, in_use, port_problem
from shared.config import ROOT, Settings
from shared.local_stack import publish, running, tool_settings, withdraw

SERVICE_VARS = ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "STORAGE_URL")
PG_URL = "postgresql://postgres:@/postgres?host=/tmp/pg-socket"


@pytest.fixture()
def clean_env(monkeypatch, tmp_path):
    for name in SERVICE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    return tmp_path


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_running_stack_is_found_and_forgotten_when_it_stops(tmp_path):
    path = publish(tmp_path, {"DATABASE_URL": PG_URL, "REDIS_URL": "redis://127.0.0.1:7001/0", "HOME": "/root"})
    assert path.stat().st_mode & 0o777 == 0o600, "URLs may carry passwords"
    assert running(tmp_path) == {"DATABASE_URL": PG_URL, "REDIS_URL": "redis://127.0.0.1:7001/0"}
    withdraw(tmp_path)
    assert running(tmp_path) == {}


def test_the_file_of_a_killed_stack_is_ignored(tmp_path):
    (tmp_path / "services.json").write_text('{"pid": %d, "urls": {"DATABASE_URL": "%s"}}' % (dead_pid(), PG_URL))
    assert running(tmp_path) == {}


def test_a_tool_takes_what_its_environment_leaves_unset_from_the_running_stack(clean_env, monkeypatch):
    publish(clean_env, {"DATABASE_URL": PG_URL, "REDIS_URL": "redis://127.0.0.1:7001/0"})
    settings = tool_settings("database_url", "redis_url")
    assert (settings.database_url, settings.redis_url) == (PG_URL, "redis://127.0.0.1:7001/0")
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6379/0")
    assert tool_settings("database_url").redis_url == "redis://cache.internal:6379/0", "the environment wins"


def test_a_tool_without_services_says_what_to_do(clean_env, capsys):
    with pytest.raises(SystemExit) as exit_:
        tool_settings("database_url")
    assert exit_.value.code == 2
    line = capsys.readouterr().err
    assert line.startswith("config error: DATABASE_URL: not set, and no `make run` is running") and "make run" in line
    assert line.count("\n") == 1


def run_module(module: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("module, args", [
    ("api.keys", ["issue", "alice"]), ("worker.check", []), ("devstack", []), ("alembic", ["upgrade", "head"]),
    ("gunicorn", ["-c", "api/gunicorn_conf.py", "-b", "127.0.0.1:0", "api.wsgi:app"]),
    ("celery", ["-A", "worker.celery_app", "worker"]), ("worker.flower", [])])
def test_a_config_error_is_one_line_and_exit_status_2(module, args, tmp_path):
    result = run_module(module, *args, VAR_DIR=str(tmp_path), DATABASE_URL="mysql://db/parley")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("config error: DATABASE_URL: ") and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.endswith("must be a postgresql:// URL\n")


def test_flower_with_a_bad_max_tasks_says_so_and_starts_nothing(tmp_path):
    result = run_module("worker.flower", VAR_DIR=str(tmp_path), FLOWER_MAX_TASKS="many",
                        DATABASE_URL="postgresql://127.0.0.1:1/parley", REDIS_URL="redis://127.0.0.1:1")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("config error: FLOWER_MAX_TASKS: ") and result.stderr.count("\n") == 1, \
        result.stderr


def test_tools_beside_nothing_say_to_start_make_run(tmp_path):
    for module, args in (("api.keys", ["issue", "alice"]), ("worker.check", []), ("alembic", ["upgrade", "head"])):
        result = run_module(module, *args, VAR_DIR=str(tmp_path))
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith("config error: DATABASE_URL: not set, and no `make run` is running")


@pytest.fixture()
def taken_port():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    yield holder.getsockname()[1]
    holder.close()


@pytest.mark.parametrize("setting", ["PORT", "FLOWER_PORT", "WORKER_METRICS_PORT"])
def test_a_taken_port_names_its_setting(setting, taken_port):
    values = {"port": free_port(), "flower_port": free_port(), setting.lower(): taken_port}
    problem = port_problem(Settings(_env_file=None, **values), workers=2)
    assert problem == (f"{setting}: {'0.0.0.0' if setting == 'WORKER_METRICS_PORT' else '127.0.0.1'}:{taken_port} "
                       f"is in use by another program; set {setting} to a free port "
                       f"(e.g. {setting}={taken_port + 1} make run)")


def test_the_worker_metrics_range_is_checked_port_by_port():
    # Workers 1 and 2, then the webhook worker: three ports from the setting; the third is taken.
    first = next(port for port in iter(free_port, None)
                 if port + 2 < 65536 and not in_use("0.0.0.0", port + 1) and not in_use("0.0.0.0", port + 2))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", first + 2))
        holder.listen()
        settings = Settings(_env_file=None, port=free_port(), flower_port=free_port(), worker_metrics_port=first)
        assert port_problem(settings, workers=2).startswith(f"WORKER_METRICS_PORT: 0.0.0.0:{first + 2} is in use")
        assert port_problem(settings, workers=1) is None


def test_two_settings_on_one_port_are_refused():
    port = free_port()
    settings = Settings(_env_file=None, port=port, flower_port=port)
    assert port_problem(settings, workers=1) == f"FLOWER_PORT: {port} is also PORT's port; give them different ports"


def test_make_run_with_a_taken_port_starts_nothing(tmp_path, taken_port):
    result = run_module("devstack", VAR_DIR=str(tmp_path / "var"), FLOWER_PORT=str(taken_port), PORT=str(free_port()))
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f"config error: FLOWER_PORT: 127.0.0.1:{taken_port} is in use by another program; "
                             f"set FLOWER_PORT to a free port (e.g. FLOWER_PORT={taken_port + 1} make run)\n")
    assert not (tmp_path / "var").exists(), "nothing was started"


def test_a_second_make_run_in_the_same_var_dir_is_refused(tmp_path):
    publish(tmp_path, {"DATABASE_URL": PG_URL})  # this process plays the first one: it is alive
    result = run_module("devstack", VAR_DIR=str(tmp_path), PORT=str(free_port()), FLOWER_PORT=str(free_port()))
    assert result.returncode == 2
    assert result.stderr == f"config error: VAR_DIR: another `make run` is using {tmp_path}; stop it first, or set VAR_DIR\n"
    assert running(tmp_path), "the first one's file is left alone"
