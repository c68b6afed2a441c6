"""Client tools, round trip: a conversation offers tools, Claude's reply calls them (the
offline model does when a message says `call tool NAME {json}`), the job ends
requires_action, the caller's results queue the continuation, and Claude answers.
Through the real SDK and the offline model, which refuses any request whose tool_use
is not answered by the very next message, so every later turn succeeding proves the
conversation stayed valid for the Messages API."""
from __future__ import annotations

import json
import threading

import requests
from sqlalchemy import text

from shared.tasks import Dispatcher, make_celery
from tests.integration.helpers import WAIT, new_conversation, say, submit
from tests.integration.sse import SseReader
from tests.integration.test_webhooks import receiver  # noqa: F401 (a fixture)
from worker.check import check

CLOCK = {"name": "clock", "description": "The current time in a time zone.",
         "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}
WEATHER = {"name": "weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


def ended(client, headers, job_id: str) -> dict:
    response = client.get(f"/v1/jobs/{job_id}?wait={WAIT}", headers=headers)
    job = response.get_json()
    assert job["status"] in ("succeeded", "failed", "cancelled", "requires_action"), job
    return job


def calling(client, headers, conversation_id: str, content: str) -> dict:
    """Submit a message that calls tools; the job once it waits for their results."""
    job = ended(client, headers, submit(client, headers, conversation_id, content)["id"])
    assert job["status"] == "requires_action", job
    return job


def answer(client, headers, job_id: str, results: list[dict], **extra_headers):
    return client.post(f"/v1/jobs/{job_id}/tool_results", json={"results": results},
                       headers={**headers, **extra_headers})


def messages(client, headers, conversation_id: str) -> list[dict]:
    return client.get(f"/v1/conversations/{conversation_id}", headers=headers).get_json()["messages"]


def model_requests(stack) -> list[dict]:
    return requests.get(f"{stack.model.url}/_requests", timeout=5).json()["requests"]


def test_a_call_pauses_the_job_and_the_results_continue_the_conversation(stack, client, alice):
    conversation_id = new_conversation(client, alice, tools=[CLOCK])
    job = calling(client, alice, conversation_id, 'What time is it? call tool clock {"tz": "Europe/Paris"}')
    (call,) = job["required_action"]["tool_calls"]
    assert call["name"] == "clock" and call["input"] == {"tz": "Europe/Paris"} and call["id"]
    assert job["required_action"]["continued_by"] is None
    assert model_requests(stack)[-1]["tools"] == [CLOCK]

    events = SseReader(client.get(f"/v1/jobs/{job['id']}/events", headers=alice, buffered=False)).rest()
    kinds = [e.type for e in events]
    assert kinds[-2:] == ["tool.call", "job.requires_action"], kinds
    pieces = [e.data for e in events if e.type == "tool.call.delta"]  # the input as the model wrote it
    assert pieces and {(p["id"], p["name"]) for p in pieces} == {(call["id"], "clock")}
    assert json.loads("".join(p["partial_json"] for p in pieces)) == call["input"]
    assert events[-2].data == call and events[-1].data["required_action"]["tool_calls"] == [call]

    response = answer(client, alice, job["id"], [{"tool_call_id": call["id"], "content": "14:05 CET"}])
    assert response.status_code == 202, response.get_json()
    continuation = response.get_json()["job"]
    assert continuation["request"]["continues"] == job["id"]
    done = ended(client, alice, continuation["id"])
    assert done["status"] == "succeeded" and done["reply"]["content"] == "The tool clock returned: 14:05 CET"
    assert ended(client, alice, job["id"])["required_action"]["continued_by"] == continuation["id"]

    stored = messages(client, alice, conversation_id)
    assert [m["role"] for m in stored] == ["user", "assistant", "user", "assistant"]
    assert {"type": "tool_use", "id": call["id"], "name": "clock", "input": {"tz": "Europe/Paris"}} in \
        stored[1]["content"]
    assert stored[2]["content"] == [{"type": "tool_result", "tool_use_id": call["id"], "content": "14:05 CET"}]
    # The next message sends the whole exchange back; the offline model checks the pairing.
    assert say(client, alice, conversation_id, "Thanks")["reply"]["content"].startswith(
        "offline model: received 5 messages")


def test_parallel_calls_are_answered_at_once_and_an_error_result_reaches_claude(client, alice):
    conversation_id = new_conversation(client, alice, tools=[CLOCK, WEATHER])
    job = calling(client, alice, conversation_id,
                  'call tool clock {"tz": "UTC"} and call tool weather {"city": "Oslo"}')
    first, second = job["required_action"]["tool_calls"]
    assert (first["name"], second["name"]) == ("clock", "weather") and first["id"] != second["id"]
    response = answer(client, alice, job["id"], [  # in any order
        {"tool_call_id": second["id"], "content": [{"type": "text", "text": "weather service down"}],
         "is_error": True},
        {"tool_call_id": first["id"], "content": "09:00"}])
    assert response.status_code == 202, response.get_json()
    done = ended(client, alice, response.get_json()["job"]["id"])
    assert done["reply"]["content"] == "The tool clock returned: 09:00\nThe tool weather failed: weather service down"


def test_results_that_do_not_answer_the_calls_are_refused_and_name_the_ids(client, alice):
    conversation_id = new_conversation(client, alice, tools=[CLOCK, WEATHER])
    job = calling(client, alice, conversation_id, 'call tool clock {"tz": "UTC"} call tool weather {}')
    first, second = (c["id"] for c in job["required_action"]["tool_calls"])
    missing = answer(client, alice, job["id"], [{"tool_call_id": first, "content": "1"}])
    assert missing.status_code == 400 and second in missing.get_json()["error"]["message"]
    assert missing.get_json()["error"]["type"] == "invalid_tool_results"
    unknown = answer(client, alice, job["id"], [{"tool_call_id": first, "content": "1"},
                                                {"tool_call_id": second, "content": "2"},
                                                {"tool_call_id": "toolu_nope", "content": "3"}])
    assert unknown.status_code == 400 and "toolu_nope" in unknown.get_json()["error"]["message"]
    twice = answer(client, alice, job["id"], [{"tool_call_id": first, "content": "1"},
                                              {"tool_call_id": first, "content": "1"}])
    assert twice.status_code == 400 and "more than once: " + first in twice.get_json()["error"]["message"]
    empty = answer(client, alice, job["id"], [])
    assert empty.status_code == 400
    assert ended(client, alice, job["id"])["required_action"]["continued_by"] is None  # nothing was queued

    results = [{"tool_call_id": first, "content": "1"}, {"tool_call_id": second, "content": "2"}]
    accepted = answer(client, alice, job["id"], results, **{"Idempotency-Key": "answer-1"})
    again = answer(client, alice, job["id"], results, **{"Idempotency-Key": "answer-1"})
    assert accepted.status_code == again.status_code == 202
    continuation = accepted.get_json()["job"]["id"]
    assert again.get_json()["job"]["id"] == continuation
    second_answer = answer(client, alice, job["id"], results)
    assert second_answer.status_code == 409
    assert second_answer.get_json()["error"]["type"] == "tool_results_already_submitted"
    assert continuation in second_answer.get_json()["error"]["message"]
    assert ended(client, alice, continuation)["status"] == "succeeded"
    not_waiting = answer(client, alice, continuation, results)
    assert not_waiting.status_code == 409 and not_waiting.get_json()["error"]["type"] == "not_waiting_for_tool_results"


def test_a_new_message_waits_for_the_results_with_a_409(client, alice):
    conversation_id = new_conversation(client, alice, tools=[CLOCK])
    job = calling(client, alice, conversation_id, 'call tool clock {"tz": "UTC"}')
    refused = client.post(f"/v1/conversations/{conversation_id}/messages", json={"content": "Hello?"},
                          headers=alice)
    assert refused.status_code == 409 and refused.get_json()["error"]["type"] == "tool_results_required"
    assert job["id"] in refused.get_json()["error"]["message"]
    (call,) = job["required_action"]["tool_calls"]
    ended(client, alice, answer(client, alice, job["id"], [{"tool_call_id": call["id"], "content": "noon"}])
          .get_json()["job"]["id"])
    assert say(client, alice, conversation_id, "Hello?")["status"] == "succeeded"


def runs_after_the_results(client, headers, conversation_id: str, job: dict, behind: dict) -> None:
    """`behind` waits while `job`'s call is unanswered, then runs right after the continuation."""
    assert client.get(f"/v1/jobs/{behind['id']}", headers=headers).get_json()["status"] == "queued"
    (call,) = job["required_action"]["tool_calls"]
    continuation = answer(client, headers, job["id"], [{"tool_call_id": call["id"], "content": "noon"}]
                          ).get_json()["job"]
    assert ended(client, headers, continuation["id"])["status"] == "succeeded"
    assert ended(client, headers, behind["id"])["status"] == "succeeded"
    assert [m["job_id"] for m in messages(client, headers, conversation_id)[::2]] == \
        [job["id"], continuation["id"], behind["id"]]


def test_a_message_sent_with_enqueue_while_waiting_runs_after_the_results(client, alice):
    conversation_id = new_conversation(client, alice, tools=[CLOCK])
    job = calling(client, alice, conversation_id, 'call tool clock {"tz": "UTC"}')
    queued = client.post(f"/v1/conversations/{conversation_id}/messages",
                         json={"content": "And the date?", "on_busy": "enqueue"}, headers=alice)
    assert queued.status_code == 202, queued.get_json()
    behind = queued.get_json()["job"]
    runs_after_the_results(client, alice, conversation_id, job, behind)


def test_a_message_queued_before_the_call_runs_after_the_results(stack, client, alice):
    conversation_id = new_conversation(client, alice, tools=[CLOCK])
    requests.post(f"{stack.model.url}/_control", json={"delay_ms": 300}, timeout=5)
    try:
        first = submit(client, alice, conversation_id, 'call tool clock {"tz": "UTC"}')
        behind = submit(client, alice, conversation_id, "And the date?")  # queued while the first runs
        job = ended(client, alice, first["id"])
    finally:
        requests.post(f"{stack.model.url}/_control", json={"delay_ms": 0}, timeout=5)
    assert job["status"] == "requires_action"
    runs_after_the_results(client, alice, conversation_id, job, behind)


def test_cancelling_a_waiting_job_answers_its_calls_with_an_error(client, alice):
    conversation_id = new_conversation(client, alice, tools=[CLOCK])
    job = calling(client, alice, conversation_id, 'call tool clock {"tz": "UTC"}')
    response = client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice)
    assert response.status_code == 200, response.get_json()
    continuation = response.get_json()["required_action"]["continued_by"]
    done = ended(client, alice, continuation)
    assert done["reply"]["content"] == "The tool clock failed: The call was cancelled by the user."
    again = client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice)
    assert again.status_code == 409
    assert say(client, alice, conversation_id, "Never mind")["status"] == "succeeded"


def test_results_that_never_come_are_answered_by_the_sweeper(stack, client, alice):
    conversation_id = new_conversation(client, alice, tools=[CLOCK])
    job = calling(client, alice, conversation_id, 'call tool clock {"tz": "UTC"}')
    timeout = stack.settings.tool_results_timeout_seconds
    with stack.services.engine.begin() as connection:  # as if it had waited past the timeout
        connection.execute(text("UPDATE jobs SET finished_at = now() - make_interval(secs => :s) WHERE id = :id"),
                           {"s": timeout + 1, "id": job["id"]})
    continued, pause = None, threading.Event()
    for _ in range(200):  # the worker's sweeper runs every SWEEP_INTERVAL_SECONDS
        continued = ended(client, alice, job["id"])["required_action"]["continued_by"]
        if continued:
            break
        pause.wait(0.05)
    assert continued, "the sweeper did not answer the overdue calls"
    done = ended(client, alice, continued)
    assert done["status"] == "succeeded"
    assert done["reply"]["content"].startswith("The tool clock failed: No result: the caller did not answer within")
    assert say(client, alice, conversation_id, "Still there?")["status"] == "succeeded"


def test_the_loop_guard_asks_for_an_answer_without_tools_after_max_tool_rounds(stack, client, alice):
    assert stack.settings.max_tool_rounds == 2
    conversation_id = new_conversation(client, alice, tools=[CLOCK])
    job = calling(client, alice, conversation_id, 'keep calling tool clock {"tz": "UTC"}')
    for round_ in (1, 2):
        (call,) = job["required_action"]["tool_calls"]
        job = ended(client, alice, answer(client, alice, job["id"], [{"tool_call_id": call["id"], "content": "t"}])
                    .get_json()["job"]["id"])
        if round_ == 1:
            assert job["status"] == "requires_action"  # the model called again
    assert job["status"] == "succeeded" and job["reply"]["content"] == "The tool clock returned: t"
    assert model_requests(stack)[-1]["tool_choice"] == {"type": "none"}


def test_a_continuation_delivered_twice_writes_one_turn(stack, client, alice):
    conversation_id = new_conversation(client, alice, tools=[CLOCK])
    job = calling(client, alice, conversation_id, 'call tool clock {"tz": "UTC"}')
    (call,) = job["required_action"]["tool_calls"]
    continuation = answer(client, alice, job["id"], [{"tool_call_id": call["id"], "content": "noon"}]).get_json()["job"]
    Dispatcher(make_celery(stack.settings, "parley-test")).turn(continuation["id"])  # a second delivery
    assert ended(client, alice, continuation["id"])["status"] == "succeeded"
    Dispatcher(make_celery(stack.settings, "parley-test")).turn(continuation["id"])  # and one after the end
    assert say(client, alice, conversation_id, "Once more")["status"] == "succeeded"
    assert [m["seq"] for m in messages(client, alice, conversation_id)] == [1, 2, 3, 4, 5, 6]


def test_tools_are_checked_when_set(client, alice):
    def refused(response, fragment: str) -> None:
        assert response.status_code == 400, response.get_json()
        assert fragment in response.get_json()["error"]["message"], response.get_json()

    create = lambda **body: client.post("/v1/conversations", json=body, headers=alice)  # noqa: E731
    refused(create(tools=[CLOCK, CLOCK]), "defined twice")
    refused(create(tools=[{**CLOCK, "name": "no spaces"}]), "name")
    refused(create(tools=[{**CLOCK, "input_schema": {"type": "string"}}]), "type")
    refused(create(tools=[{**CLOCK, "input_schema": {"type": "object", "properties": {"tz": {"type": "clock"}}}}]),
            "not a valid JSON Schema")
    refused(create(tools=[CLOCK], tool_choice={"type": "tool", "name": "weather"}), "'weather' is not one of")
    refused(create(tools=[{**CLOCK, "description": "x" * 70_000}]), "description")
    conversation_id = new_conversation(client, alice, tools=[CLOCK], tool_choice={"type": "auto"})
    path = f"/v1/conversations/{conversation_id}"
    refused(client.patch(path, json={"tool_choice": {"type": "tool", "name": "weather"}}, headers=alice), "weather")
    patched = client.patch(path, json={"tools": [CLOCK, WEATHER], "tool_choice": {"type": "tool", "name": "weather"}},
                           headers=alice).get_json()
    assert [t["name"] for t in patched["tools"]] == ["clock", "weather"] and patched["tool_choice"]["name"] == "weather"
    cleared = client.patch(path, json={"tools": None}, headers=alice).get_json()
    assert cleared["tools"] is None and cleared["tool_choice"] is None


def test_a_message_may_bring_its_own_tools(stack, client, alice):
    conversation_id = new_conversation(client, alice)
    response = client.post(f"/v1/conversations/{conversation_id}/messages",
                           json={"content": 'call tool weather {"city": "Rome"}', "tools": [WEATHER]}, headers=alice)
    job = ended(client, alice, response.get_json()["job"]["id"])
    (call,) = job["required_action"]["tool_calls"]
    results = [{"tool_call_id": call["id"], "content": "sunny"}]
    continuation = answer(client, alice, job["id"], results).get_json()["job"]
    assert ended(client, alice, continuation["id"])["reply"]["content"] == "The tool weather returned: sunny"
    assert model_requests(stack)[-1]["tools"] == [WEATHER]  # the continuation kept the message's tools
    # The conversation offers no tools: the API refuses tool blocks then, so they go as text.
    assert say(client, alice, conversation_id, "Thanks")["status"] == "succeeded"
    last = model_requests(stack)[-1]
    assert "tools" not in last
    assert {"type": "text", "text": '[called tool weather with {"city": "Rome"}]'} in last["messages"][1]["content"]


def test_the_webhook_fires_when_the_job_waits_and_again_for_the_continuation(client, alice, receiver):
    hook = receiver()
    conversation_id = new_conversation(client, alice, tools=[CLOCK])
    response = client.post(f"/v1/conversations/{conversation_id}/messages",
                           json={"content": 'call tool clock {"tz": "UTC"}', "callback_url": hook.url}, headers=alice)
    job = ended(client, alice, response.get_json()["job"]["id"])
    (headers, body), = hook.wait_calls(1)
    delivered = json.loads(body)
    assert headers["Parley-Event"] == "job.requires_action" and delivered["status"] == "requires_action"
    assert delivered["required_action"]["tool_calls"] == job["required_action"]["tool_calls"]
    (call,) = job["required_action"]["tool_calls"]
    continuation = answer(client, alice, job["id"], [{"tool_call_id": call["id"], "content": "noon"}]).get_json()["job"]
    assert continuation["webhook"]["url"] == hook.url  # the continuation reports to the same receiver
    ended(client, alice, continuation["id"])
    calls = hook.wait_calls(2)
    assert calls[1][0]["Parley-Event"] == "job.succeeded" and json.loads(calls[1][1])["id"] == continuation["id"]


def test_the_checker_finds_tool_rounds_consistent(stack, client, alice):
    conversation_id = new_conversation(client, alice, tools=[CLOCK])
    job = calling(client, alice, conversation_id, 'call tool clock {"tz": "UTC"}')
    waiting = check(stack.services, grace=3600)  # a job waiting for results has its turn committed
    (call,) = job["required_action"]["tool_calls"]
    ended(client, alice, answer(client, alice, job["id"], [{"tool_call_id": call["id"], "content": "1"}])
          .get_json()["job"]["id"])
    answered = check(stack.services, grace=3600)
    for report in (waiting, answered):
        assert not [f for f in report.findings if conversation_id in f.subject or job["id"] in f.subject], \
            report.lines()
