"""Start the stack in the foreground; Ctrl-C stops every process it started.

Unset DATABASE_URL / REDIS_URL / STORAGE_URL get the embedded defaults; with no
ANTHROPIC_API_KEY the offline model serves the real Messages API locally (and with
LLM_PROVIDER=bedrock but no AWS credentials, Bedrock's Converse API).
Processes are supervised by honcho (a Foreman clone) and write to this terminal
themselves (devstack/supervisor.py). The services, the environment,
the migration and each process's command line are the stack builder's (devstack/
services.py, environment.py, processes.py), which the tests, the bench and the soak use.
"""
from __future__ import annotations

import os
import secrets
import shlex
import sys
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from devstack.environment import aws_credentials_found, migrate, offline_model_env
from devstack.ports import free_port, port_problem
from devstack.processes import DEFAULT_WORKERS, api_argv, flower_argv, model_argv, webhook_worker_argv, worker_argv
from devstack.supervisor import Supervisor
from shared.config import ROOT, Settings, load_settings
from shared.db import make_engine, make_sessions, unit_of_work
from shared.local_stack import config_errors, config_failure, publish, running, withdraw
from shared.logs import configure_logging
from shared.users import authenticate, get_or_create_user, issue_key


def dev_key(env: dict, var_dir: Path) -> str:
    """Reuse the saved development key while it still works; otherwise issue one."""
    engine = make_engine(Settings(database_url=env["DATABASE_URL"]).sqlalchemy_url, pool_size=1)
    key_file = var_dir / "dev-api-key"
    try:
        with unit_of_work(make_sessions(engine)) as session:
            saved = key_file.read_text().strip() if key_file.exists() else ""
            if saved and authenticate(session, saved):
                return saved
            key = issue_key(session, get_or_create_user(session, "dev"))
    finally:
        engine.dispose()
    write_private(key_file, key + "\n")
    return key


def write_private(path: Path, text: str) -> None:
    """A file only its owner can read, from its first byte."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(text)
    path.chmod(0o600)  # a file that already existed keeps its old mode otherwise


def flower(python: str, port: int, password: str, env: dict) -> tuple[str, dict]:
    """Flower's command and environment: loopback only, behind basic auth. Flower shows
    every task and can revoke them. The password travels in the environment
    (FLOWER_BASIC_AUTH), not the command line, which any local user can read."""
    return (f"{python} {shlex.join(flower_argv(port)[1:])}",
            {**env, "FLOWER_BASIC_AUTH": f"parley:{password}"})


def metrics_port(env: dict, settings: Settings, offset: int) -> dict:
    """Worker processes on one host cannot share a metrics port: each gets the next one."""
    if not settings.worker_metrics_port:
        return env
    return {**env, "WORKER_METRICS_PORT": str(settings.worker_metrics_port + offset)}


def worker_metrics(settings: Settings, workers: int) -> str:
    if not settings.worker_metrics_port:
        return ""
    return f"  (workers: ports {settings.worker_metrics_port}..{settings.worker_metrics_port + workers})"


def worker_count() -> int:
    raw = os.environ.get("WORKERS", str(DEFAULT_WORKERS)).strip()
    if not raw.isdigit() or not 1 <= int(raw) <= 64:
        config_failure(f"WORKERS: must be a whole number from 1 to 64, not {raw!r}")
    return int(raw)


def main() -> int:
    with config_errors():
        return run()


def run() -> int:
    settings = load_settings()
    configure_logging("WARNING", settings.log_format)
    workers = worker_count()
    var_dir = settings.var_dir
    if running(var_dir):  # its PostgreSQL owns var/postgres: a second one would fail half-way
        config_failure(f"VAR_DIR: another `make run` is using {var_dir}; stop it first, or set VAR_DIR")
    if problem := port_problem(settings, workers):
        config_failure(problem)  # before anything starts: nothing to stop
    var_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    published = False
    embedded = []
    manager = Supervisor()
    try:
        if not settings.database_url:
            from shared.embedded import EmbeddedPostgres
            embedded.append(EmbeddedPostgres(var_dir / "postgres"))
            env["DATABASE_URL"] = embedded[-1].url
        if not settings.redis_url:
            from shared.embedded import EmbeddedValkey
            embedded.append(EmbeddedValkey(var_dir / "valkey"))
            env["REDIS_URL"] = embedded[-1].url
        env.setdefault("STORAGE_URL", str(var_dir / "storage"))
        model_port = free_port()
        if offline := offline_model_env(settings, f"http://127.0.0.1:{model_port}", aws_credentials_found()):
            env.update(offline)
            manager.add_process("model", shlex.join(model_argv(model_port)), env=env, cwd=ROOT)

        migrate(Settings(database_url=env["DATABASE_URL"]).sqlalchemy_url, echo=True)
        key = dev_key(env, var_dir)
        flower_password = secrets.token_urlsafe(12)
        write_private(var_dir / "flower-password", flower_password + "\n")

        manager.add_process("api", shlex.join(api_argv(f"127.0.0.1:{settings.port}")), env=env, cwd=ROOT)
        for n in range(1, workers + 1):
            argv = worker_argv("parley.turns", f"worker{n}@%h", settings.worker_concurrency, settings.worker_pool)
            manager.add_process(f"worker{n}", shlex.join(argv), env=metrics_port(env, settings, n - 1), cwd=ROOT)
        manager.add_process("webhooks", shlex.join(webhook_worker_argv()),
                            env={**metrics_port(env, settings, workers), "WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true"},
                            cwd=ROOT)
        flower_command, flower_env = flower(shlex.quote(sys.executable), settings.flower_port, flower_password, env)
        manager.add_process("flower", flower_command, env=flower_env, cwd=ROOT)
        print(f"\n  Chat    http://127.0.0.1:{settings.port}/  (open it, paste the API key below)\n"
              f"  API     http://127.0.0.1:{settings.port}\n"
              f"  Flower  http://127.0.0.1:{settings.flower_port}  (user parley, password in var/flower-password)\n"
              f"  API key {key}  (saved in var/dev-api-key)\n"
              f"  Metrics http://127.0.0.1:{settings.port}/metrics{worker_metrics(settings, workers)}\n"
              "  Webhooks may call private and loopback addresses here (WEBHOOK_ALLOW_PRIVATE_ADDRESSES=true);"
              " deployments refuse them\n", flush=True)
        published = bool(publish(var_dir, env))  # `make user`, `python -m worker.check` beside this find them
        manager.loop()
        return manager.returncode or 0
    except SQLAlchemyError as error:  # the migration could not reach or change the database
        print(f"start-up failed: {error}", file=sys.stderr)
        return 1
    finally:
        if published:
            withdraw(var_dir)
        for server in reversed(embedded):
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
