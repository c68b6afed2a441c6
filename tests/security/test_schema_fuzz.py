"""schemathesis against the served /openapi.json with all its checks: no 5xx, every
response is what the document says it is (status code, content type, body schema,
headers), data valid by the document is accepted, data that is not is refused, and an
undocumented method answers 405 with Allow.

Every documented operation is fuzzed with data that fits the document and data that
does not. Bounded and derandomized: the same few examples each run.

The operations are read from the app at test time, so this drives hypothesis
directly instead of schemathesis' pytest loader (whose lazy, fixture-based form
does not run under pytest 9).
"""
from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.modes import GenerationMode

from tests.security.support import bearer, new_key

EXAMPLES = settings(max_examples=6, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate],
                    report_multiple_bugs=False)


def fuzz(operation, mode: GenerationMode, app, headers: dict) -> None:
    @EXAMPLES
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        if isinstance(case.body, dict):
            # A generated callback URL would send the webhook worker to arbitrary hosts.
            case.body.pop("callback_url", None)
            if mode is GenerationMode.POSITIVE:
                fit_cross_field(case.body)
        case.call_and_validate(app=app, headers=headers)  # every check

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise  # only an operation without inputs has nothing to break


def fit_cross_field(body: dict) -> None:
    fit_tools(body)
    # Which thinking a model takes (adaptive, a budget, effort) is its capability, read from
    # the provider (shared/thinking.py, 400 otherwise), not something the document can say
    # per model: valid cases ask for none. tests/integration/test_thinking.py covers the rest.
    if isinstance(body.get("thinking"), dict):
        body["thinking"] = {"type": "disabled"}


def fit_tools(body: dict) -> None:
    """Make true what JSON Schema cannot say about client tools (shared/tools.py checks it,
    400 otherwise): names unique, each input_schema itself a valid JSON Schema, and a
    tool_choice only with tools it names. Negative cases keep whatever they were given."""
    if isinstance(body.get("tools"), list):
        names: set = set()
        unique = [tool for tool in body["tools"]
                  if isinstance(tool, dict) and tool.get("name") not in names and not names.add(tool.get("name"))]
        body["tools"] = [tool if "type" in tool else {**tool, "input_schema": {"type": "object"}} for tool in unique]
    body.pop("tool_choice", None)


# "Valid data is accepted" (a 2xx, or 404/409/429 for ids and states the document cannot
# know) holds everywhere but in three places, where JSON Schema cannot say what the server
# checks: an opaque cursor that fits its type but was not issued by the API, a `from`
# after `to` or more than 366 days apart, and an upload's bytes (judged by what they are:
# empty, corrupt, not the type its name says, over its kind's cap). All are 400 (413, 415)
# by design; nothing else may be.
CROSS_FIELD_RULES = [{"include-name": f"GET {path}", "checks": {"positive_data_acceptance": {
    "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "429"]}}}
    for path in ("/v1/conversations", "/v1/conversations/{conversation_id}/messages",
                 "/v1/conversations/{conversation_id}/forks", "/v1/files", "/v1/usage")] + [
    {"include-name": "POST /v1/files", "checks": {"positive_data_acceptance": {
        "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "413", "415", "429"]}}}]
CONFIG = {"operations": CROSS_FIELD_RULES}


def test_every_operation_matches_its_document(stack, app):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app, config=SchemathesisConfig.from_dict(CONFIG))
    failures, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        headers = bearer(new_key(stack))  # a key per operation: its own rate-limit bucket
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz(operation, mode, app, headers)
            except (Exception, BaseExceptionGroup) as failure:  # collect all: one run shows every problem
                failures.append(f"{operation.label} ({mode.value}): {failure}")
    assert operations >= 10, "the document lists the API's operations"
    assert not failures, "\n\n".join(failures)


def test_linked_operations_hold_together(stack, app):
    """Following the document's links (a created conversation's id into its reads, edits,
    messages and deletion; a message's job id into the job, its events and cancel), each
    step still matches the document, and the stateful checks hold: what was created can
    be read, what was deleted is gone."""
    # The key as configured auth, so the auth checks know it is meant to be valid.
    config = SchemathesisConfig.from_dict({**CONFIG, "headers": bearer(new_key(stack))})
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app, config=config)

    class Scenario(schema.as_state_machine()):
        def before_call(self, case):
            if isinstance(case.body, dict):
                case.body.pop("callback_url", None)  # as above
                fit_cross_field(case.body)  # its cases fit the document

    Scenario.run(settings=settings(max_examples=4, stateful_step_count=5, derandomize=True, database=None,
                                   deadline=None, suppress_health_check=list(HealthCheck),
                                   report_multiple_bugs=False))
