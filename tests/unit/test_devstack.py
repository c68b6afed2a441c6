"""`make run` points the configured provider at the offline model only when it has nowhere real to go."""
from __future__ import annotations

import pytest

from devstack.environment import offline_model_env
from shared.config import Settings

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
