"""schemathesis against the served /openapi.json: no 5xx, and every response is what
the document says it is (status code, content type, body schema, headers).

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
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

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
        # Opaque values (a cursor, an id) fit their documented type yet are refused with
        # 400/404 by design, so "valid data is accepted" does not hold for this API.
        case.call_and_validate(app=app, headers=headers, excluded_checks=[positive_data_acceptance])

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise  # only an operation without inputs has nothing to break


def test_every_operation_matches_its_document(stack, app):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
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
