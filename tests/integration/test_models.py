"""Today's models: the configured ids are checked against the provider's own model list
(the offline model answers the Models API and Bedrock's ListFoundationModels), a retired
or unknown one stops start-up with one line, a deprecated one is a warning shown on
GET /v1/models, and a conversation pinned to a model retired since fails with a way out."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import anthropic
import pytest
import requests

from api import create_app
from offline_model import OfflineModelServer
from shared.catalog import check_models
from shared.config import ROOT, ConfigError, Settings
from shared.model import AnthropicProvider, ModelRequest
from tests.conftest import ALLOWED_TEST_MODELS
from tests.integration.helpers import new_conversation, say, submit, wait_job

AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def server():
    with OfflineModelServer() as running:
        yield running


@pytest.fixture()
def lifecycle(server):
    """Set models' lifecycles on the offline model for one test."""
    changed: list[str] = []

    def set_stages(**stages: str) -> None:
        models = {model.replace("_", "-"): stage for model, stage in stages.items()}
        changed.extend(models)
        requests.post(f"{server.url}/_control", json={"lifecycle": models}, timeout=5).raise_for_status()
    yield set_stages
    requests.post(f"{server.url}/_control", json={"lifecycle": dict.fromkeys(changed)}, timeout=5)


def settings_for(server, **values) -> Settings:
    return Settings(_env_file=None, anthropic_api_key="sk-test", anthropic_base_url=server.url, **values)


def test_the_models_api_through_the_sdk(server):
    client = anthropic.Anthropic(api_key="sk-test", base_url=server.url, max_retries=0)
    current = [model.id for model in client.models.list()]
    assert current[0] == Settings(_env_file=None).model == "claude-sonnet-5-5"  # the default is the newest Sonnet
    assert "claude-sonnet-4-5" not in current  # retired on 2026-11-30: listed only when asked for
    retired = {m.id: m for m in client.models.list(lifecycle=["retired"])}
    assert retired["claude-sonnet-4-5"].lifecycle == "retired"
    assert str(retired["claude-sonnet-4-5"].retires_at.date()) == "2026-11-30"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-imaginary-9")


def test_current_models_pass_and_deprecated_ones_warn_with_their_date(server, lifecycle, caplog):
    lifecycle(claude_haiku_4_5="deprecated")
    with caplog.at_level(logging.WARNING, logger="parley.models"):
        statuses = check_models(settings_for(server, allowed_models="claude-haiku-4-5"))
    assert statuses["claude-sonnet-5-5"].lifecycle == "active"
    assert statuses["claude-haiku-4-5"].lifecycle == "deprecated" and statuses["claude-haiku-4-5"].retires_at
    assert any("claude-haiku-4-5" in r.getMessage() and statuses["claude-haiku-4-5"].retires_at in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("values, line", [
    ({"model": "claude-sonnet-4-5"}, "MODEL: claude-sonnet-4-5 was retired"),
    ({"allowed_models": "claude-opus-4-8, claude-imaginary-9"},
     "ALLOWED_MODELS: claude-imaginary-9 is not a model the provider offers"),
])
def test_retired_or_unknown_models_are_refused(server, values, line):
    with pytest.raises(ConfigError) as refused:
        check_models(settings_for(server, **values))
    assert str(refused.value).startswith(line) and "claude-sonnet-5-5" in str(refused.value)  # names a way out


def test_an_unreachable_model_list_is_a_warning_not_a_refusal(caplog):
    settings = Settings(_env_file=None, anthropic_api_key="sk-test", anthropic_base_url="http://127.0.0.1:9",
                        model="claude-sonnet-4-5")
    with caplog.at_level(logging.WARNING, logger="parley.models"):
        assert check_models(settings) == {}
    assert "could not check the configured models" in caplog.text


def test_bedrock_models_are_checked_with_list_foundation_models(server, lifecycle, monkeypatch):
    for name, value in AWS.items():
        monkeypatch.setenv(name, value)
    bedrock = dict(llm_provider="bedrock", bedrock_endpoint_url=server.url)
    lifecycle(claude_opus_4_8="deprecated")
    statuses = check_models(Settings(_env_file=None, allowed_models="anthropic.claude-opus-4-8", **bedrock))
    assert statuses["global.anthropic.claude-sonnet-5-5"].lifecycle == "active"
    assert statuses["anthropic.claude-opus-4-8"].lifecycle == "deprecated"
    with pytest.raises(ConfigError, match="^BEDROCK_MODEL_ID: anthropic.claude-sonnet-4-5-20250929-v1:0 "):
        check_models(Settings(_env_file=None, bedrock_model_id="anthropic.claude-sonnet-4-5-20250929-v1:0",
                              **bedrock))


@pytest.mark.parametrize("command", [
    [sys.executable, "-m", "gunicorn", "-c", "api/gunicorn_conf.py", "--bind", "127.0.0.1:0", "api.wsgi:app"],
    [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool", "threads"],
], ids=["api", "worker"])
def test_a_process_configured_with_a_retired_model_refuses_to_start_in_one_line(server, tmp_path, command):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "MODEL", "LLM_"))}
    env.update(MODEL="claude-sonnet-4-5", ANTHROPIC_API_KEY="sk-test", ANTHROPIC_BASE_URL=server.url,
               DATABASE_URL="postgresql://parley@127.0.0.1:9/parley", REDIS_URL="redis://127.0.0.1:9/0",
               VAR_DIR=str(tmp_path))
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("config error:")]
    assert lines == [lines[0]] and lines[0].startswith("config error: MODEL: claude-sonnet-4-5 was retired")


def test_the_sdks_deprecation_warning_fails_the_suite(server, lifecycle):
    # The pinned SDK warns (DeprecationWarning) for a model it lists as deprecated; the suite
    # turns that into an error, so no test can quietly run on such a model again.
    provider = AnthropicProvider("sk-test", server.url, timeout=5)
    with pytest.raises(DeprecationWarning, match="claude-sonnet-4-5"):
        provider.complete(ModelRequest(None, [{"role": "user", "content": "hi"}], "claude-sonnet-4-5", 16))


def test_models_endpoint_shows_each_models_lifecycle(stack, alice, lifecycle_on_stack):
    lifecycle_on_stack(**{ALLOWED_TEST_MODELS[0]: "deprecated"})
    client = create_app(stack.settings, stack.services).test_client()  # a fresh process's view of the list
    listed = client.get("/v1/models", headers=alice).get_json()
    assert listed["default"] == stack.settings.default_model and listed["data"] == sorted(listed["data"])
    statuses = {model["id"]: model for model in listed["models"]}
    assert set(statuses) == set(listed["data"])
    assert statuses[stack.settings.default_model]["lifecycle"] == "active"
    assert statuses[ALLOWED_TEST_MODELS[0]]["lifecycle"] == "deprecated"
    assert statuses[ALLOWED_TEST_MODELS[0]]["retires_at"]


def test_a_conversation_on_a_model_retired_since_fails_with_the_current_choices(stack, client, alice,
                                                                                 lifecycle_on_stack):
    pinned = ALLOWED_TEST_MODELS[1]
    conversation_id = new_conversation(client, alice, model=pinned)
    say(client, alice, conversation_id, "Hello")
    lifecycle_on_stack(**{pinned: "retired"})
    job = wait_job(client, alice, submit(client, alice, conversation_id, "Still there?")["id"])
    assert job["status"] == "failed" and job["error"]["type"] == "invalid_request"
    message = job["error"]["message"]
    assert pinned in message and "retired" in message and "PATCH" in message
    assert stack.settings.default_model in message and ALLOWED_TEST_MODELS[0] in message
    # The way out works: the next message, on a current model, is answered.
    client.patch(f"/v1/conversations/{conversation_id}", json={"model": None}, headers=alice)
    assert say(client, alice, conversation_id, "And now?")["reply"]["model"] == stack.settings.default_model


@pytest.fixture()
def lifecycle_on_stack(stack):
    changed: list[str] = []

    def set_stages(**stages: str) -> None:
        changed.extend(stages)
        requests.post(f"{stack.model.url}/_control", json={"lifecycle": stages}, timeout=5).raise_for_status()
    yield set_stages
    requests.post(f"{stack.model.url}/_control", json={"lifecycle": dict.fromkeys(changed)}, timeout=5)
