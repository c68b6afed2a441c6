"""docker-compose.yml: the services exist, are wired safely, and name real code and settings.

Docker does not have to be installed: the file is only parsed (PyYAML resolves the
`<<: *anchor` merges the same way `docker compose` does).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from shared.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = sorted(name for name, svc in SERVICES.items() if svc.get("image") == "parley:latest")
SETTING_NAMES = {name.upper() for name in Settings.model_fields}


def command_of(service: dict) -> list[str]:
    command = service["command"]
    return command.split() if isinstance(command, str) else list(command)


def module_exists(module: str) -> bool:
    """A module or package in this repo (not an installed library)."""
    path = REPO_ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def referenced_code(command: list[str]) -> tuple[list[str], list[str]]:
    """(modules, files) a command needs from the repo."""
    modules, files = [], []
    program, args = command[0], command[1:]
    for flag, value in zip(args, args[1:]):
        if program == "celery" and flag in ("-A", "--app"):
            modules.append(value)
        if program == "python" and flag == "-m":
            modules.append(value)
        if program == "gunicorn" and flag in ("-c", "--config"):
            files.append(value)
    if program == "gunicorn":
        modules.append(args[-1].split(":")[0])
    if program == "alembic":
        files.append("alembic.ini")
    return modules, files


def test_expected_services_exist():
    for name in ("postgres", "redis", "minio", "migrate", "api", "worker", "flower"):
        assert name in SERVICES, name


def test_app_services_share_the_image():
    assert {"migrate", "model", "api", "worker", "flower"} <= set(APP_SERVICES)


def test_worker_can_scale():
    worker = SERVICES["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker


def test_flower_is_loopback_only_and_authenticated():
    flower = SERVICES["flower"]
    assert flower["ports"], "flower publishes its port"
    for port in flower["ports"]:
        assert str(port).startswith("127.0.0.1:"), port
    command = command_of(flower)
    assert any(arg.startswith("--basic-auth=") for arg in command), command
    auth = next(arg for arg in command if arg.startswith("--basic-auth="))
    assert "${FLOWER_USER:?" in auth and "${FLOWER_PASSWORD:?" in auth, "credentials must be required"


def test_api_and_worker_read_identical_environment():
    api, worker = SERVICES["api"]["environment"], SERVICES["worker"]["environment"]
    assert isinstance(api, dict) and api
    assert api == worker
    for name in APP_SERVICES:
        assert SERVICES[name]["environment"] == api, name


def test_shared_environment_names_are_real_settings():
    shared = COMPOSE["x-parley-env"]
    unknown = [name for name in shared if name not in SETTING_NAMES and not name.startswith("AWS_")]
    assert not unknown, f"not a Settings field nor an AWS_ variable: {unknown}"


def test_shared_environment_values_parse_as_settings():
    # With the ${VAR:-default} defaults substituted, the values pass Settings validation.
    def default(value: str) -> str:
        value = str(value)
        while "${" in value:
            start = value.index("${")
            end = value.index("}", start)
            inner = value[start + 2:end]
            fallback = inner.split(":-", 1)[1] if ":-" in inner else ""
            value = value[:start] + fallback + value[end + 1:]
        return value

    values = {name.lower(): default(value) for name, value in COMPOSE["x-parley-env"].items()
              if name in SETTING_NAMES}
    settings = Settings(_env_file=None, **values)
    assert settings.storage_url.startswith("s3://parley/")


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_command_names_existing_code(name):
    modules, files = referenced_code(command_of(SERVICES[name]))
    assert modules or files, f"{name}: command names no repo code"
    for module in modules:
        assert module_exists(module), f"{name}: module {module} not in the repo"
        assert importlib.util.find_spec(module.split(".")[0]) is not None
    for file in files:
        assert (REPO_ROOT / file).is_file(), f"{name}: {file} not in the repo"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_healthcheck_or_is_one_shot(name):
    service = SERVICES[name]
    assert "healthcheck" in service or service.get("restart") == "no", name


def test_one_shots_are_awaited():
    for name in ("api", "worker"):
        depends = SERVICES[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["minio-setup"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_bucket_created_matches_storage_url():
    bucket = COMPOSE["x-parley-env"]["STORAGE_URL"][len("s3://"):].split("/", 1)[0]
    setup = " ".join(command_of(SERVICES["minio-setup"]))
    assert f"local/{bucket}" in setup
