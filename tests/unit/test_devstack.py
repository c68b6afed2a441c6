"""`make run` points the configured provider at the offline model only when it has nowhere real to go,
and its processes write to its terminal themselves."""
from __future__ import annotations

import subprocess
import sys

import pytest

from devstack.environment import offline_model_env
from shared.config import ROOT, Settings

URL = "http://127.0.0.1:9999"


def settings(**values) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.mark.parametrize("values, credentials, expected", [
    ({}, False, {"ANTHROPIC_BASE_URL": URL}),
    ({"anthropic_api_key": "sk-ant-real"}, False, {}),
    ({"anthropic_base_url": "https://proxy.example"}, False, {}),
    ({"llm_provider": "bedrock"}, True, {}),  # the AWS credential chain found some: real Bedrock
    ({"llm_provider": "bedrock", "bedrock_endpoint_url": "https://bedrock.example"}, False, {}),
    ({"llm_provider": "bedrock"}, False,
     {"BEDROCK_ENDPOINT_URL": URL, "AWS_ACCESS_KEY_ID": "offline", "AWS_SECRET_ACCESS_KEY": "offline"}),
])
def test_offline_model_only_without_a_real_endpoint(values, credentials, expected, monkeypatch):
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "LLM_PROVIDER", "BEDROCK_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    assert offline_model_env(settings(**values), URL, credentials) == expected


def test_make_runs_processes_write_their_own_lines_and_are_named():
    """A line a process prints reaches the terminal as it was printed (valid JSON stays
    valid: no relay, no prefix), and the process knows the name honcho shows for it."""
    script = ("from devstack.supervisor import Supervisor\n"
              "manager = Supervisor()\n"
              "manager.add_process('api', '''printf '{\"process\": \"%s\"}\\\\n' \"$PROCESS_NAME\"''')\n"
              "manager.loop()\n"
              "raise SystemExit(manager.returncode)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert '{"process": "api"}' in lines, lines
    assert any("api started (pid=" in line for line in lines) and any("api stopped (rc=0)" in line for line in lines)
