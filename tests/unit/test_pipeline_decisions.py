"""The turn pipeline's decisions, with fakes at every port and no I/O (tests/unit/fakes.py):
what it does when the model answers, fails for good or for now, when the job is cancelled,
taken over or busy elsewhere, and when a backing service is down. The same decisions
against the real services, with faults injected, are tests/faults/."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy.exc import OperationalError

from shared.model import ModelError
from tests.unit.fakes import FakeRecords, RecordingDispatcher, fake_services, reply
from worker.pipeline import RETRY_SECONDS, Runtime, run_turn


@pytest.fixture
def turn():
    """A conversation with one queued message, and the pipeline's ports as fakes."""
    services, records = fake_services(), FakeRecords()
    conversation = records.conversation_for(uuid.uuid4())
    job_id = records.submit(conversation, "What is a fence?")
    runtime = Runtime(RecordingDispatcher(), worker="unit", records=records)
    return services, records, runtime, conversation, job_id


def job(records: FakeRecords, job_id: str):
    return records.jobs[uuid.UUID(job_id)]


def test_an_answer_is_logged_committed_and_announced_in_that_order(turn):
    services, records, runtime, conversation, job_id = turn
    services.provider.steps.append(reply("A fence stops a stale writer."))

    outcome = run_turn(services, job_id, runtime)

    assert (outcome.status, outcome.ended) == ("done", "succeeded")
    [logged] = services.store.objects.values()
    assert [m["content"] for m in logged["messages"]] == ["What is a fence?", "A fence stops a stale writer."]
    [stored] = records.turns
    assert stored["seq"] == 1 and stored["entry"] == logged and conversation.turn_count == 1
    assert job(records, job_id).reply["content"] == "A fence stops a stale writer."
    types = services.events.types(job_id)
    assert types[0] == "job.started" and types[-1] == "job.succeeded"
    assert "".join(data["text"] for type_, data in services.events.by_job[job_id] if type_ == "message.delta") \
        == "A fence stops a stale writer."
    window = services.windows.saved[conversation.conversation_id]
    assert [message.role for message in window.messages] == ["user", "assistant"] and window.turn_seq == 1


def test_the_next_message_of_the_conversation_is_sent_once_this_turn_ends(turn):
    services, records, runtime, conversation, job_id = turn
    following = records.submit(conversation, "And a lease?")
    services.provider.steps.append(reply())

    run_turn(services, job_id, runtime)

    assert runtime.dispatcher.turns == [following]


def test_a_claim_lost_before_the_log_write_writes_nothing(turn):
    """The fence: another worker took the job over while the model answered; this seq is
    now the new holder's, so neither the log nor the turn is written."""
    services, records, runtime, conversation, job_id = turn

    def answered_after_a_takeover(request):
        records.take_over(job_id)
        return reply("too late")
    services.provider.steps.append(answered_after_a_takeover)

    assert run_turn(services, job_id, runtime).status == "skipped"
    assert services.store.objects == {} and records.turns == [] and conversation.turn_count == 0
    assert "job.succeeded" not in services.events.types(job_id)


def test_a_conversation_deleted_after_the_fence_takes_its_log_entry_with_it(turn):
    services, records, runtime, conversation, job_id = turn

    def answered_while_deleted(request):
        original = records.renew

        def renew_then_delete(held):  # the fence passes, then the user deletes the conversation
            held_now = original(held)
            del records.conversations[conversation.conversation_id]
            return held_now
        records.renew = renew_then_delete
        return reply()
    services.provider.steps.append(answered_while_deleted)

    assert run_turn(services, job_id, runtime).status == "skipped"
    assert services.store.objects == {} and records.turns == []


def test_a_job_cancelled_while_the_model_answers_stops_at_its_next_event(turn):
    services, records, runtime, conversation, job_id = turn

    def cancelled_meanwhile(request):
        services.events.add(job_id, "job.cancelled", {})  # the API's cancel published the end
        request.on_text("partial")
        return reply("never stored")
    services.provider.steps.append(cancelled_meanwhile)

    outcome = run_turn(services, job_id, runtime)

    assert (outcome.status, outcome.ended) == ("done", "cancelled")
    assert records.turns == [] and services.store.objects == {}
    assert services.events.types(job_id)[-1] == "job.cancelled"


def test_a_message_behind_a_running_turn_is_busy_until_that_lease_runs_out(turn):
    services, records, runtime, conversation, job_id = turn
    job(records, job_id).status = "running"  # another worker holds it

    outcome = run_turn(services, job_id, runtime)

    assert (outcome.status, outcome.retry_after) == ("busy", records.lease_seconds)
    assert services.provider.requests == []


def test_a_finished_or_deleted_job_is_skipped(turn):
    services, records, runtime, conversation, job_id = turn
    job(records, job_id).status = "succeeded"
    assert run_turn(services, job_id, runtime).status == "skipped"
    assert run_turn(services, str(uuid.uuid4()), runtime).status == "skipped"


def test_a_database_that_cannot_be_reached_hands_the_delivery_back(turn):
    services, records, runtime, conversation, job_id = turn
    records.claim_error = OperationalError("claim", {}, Exception("connection refused"))

    outcome = run_turn(services, job_id, runtime)

    assert (outcome.status, outcome.retry_after) == ("busy", RETRY_SECONDS)
    assert job(records, job_id).status == "queued"


def test_a_store_that_is_down_hands_the_claimed_job_back_for_a_retry(turn):
    services, records, runtime, conversation, job_id = turn
    services.store.down = True
    services.provider.steps.extend([reply("first try"), reply("second try")])

    first = run_turn(services, job_id, runtime)

    assert first.status == "busy" and records.released == [uuid.UUID(job_id)]
    assert job(records, job_id).status == "queued" and records.turns == []
    services.store.down = False
    assert run_turn(services, job_id, runtime).ended == "succeeded"
    assert job(records, job_id).attempts == 2 and job(records, job_id).reply["content"] == "second try"
    assert services.events.types(job_id).count("message.reset") == 1  # the retry drops the first try's text


def test_a_model_error_fails_the_job_with_its_kind_and_stores_nothing(turn):
    services, records, runtime, conversation, job_id = turn
    services.provider.steps.append(ModelError("provider_auth", "The model provider rejected Parley's credentials."))

    outcome = run_turn(services, job_id, runtime)

    assert (outcome.status, outcome.ended) == ("done", "failed")
    assert job(records, job_id).error == {"type": "provider_auth",
                                          "message": "The model provider rejected Parley's credentials."}
    assert records.turns == [] and services.store.objects == {}
    assert services.events.types(job_id)[-1] == "job.failed"


def test_a_retired_model_fails_with_how_to_choose_another(turn):
    services, records, runtime, conversation, job_id = turn
    services.provider.steps.append(ModelError("invalid_request", "model: not found", model_gone=True))

    run_turn(services, job_id, runtime)

    message = job(records, job_id).error["message"]
    assert "retired by the provider" in message and f"/v1/conversations/{conversation.conversation_id}" in message


def test_a_message_longer_than_the_window_fails_without_calling_the_model():
    services, records = fake_services(max_context_tokens=1000), FakeRecords()
    conversation = records.conversation_for(uuid.uuid4())
    job_id = records.submit(conversation, "word " * 5000)

    run_turn(services, job_id, Runtime(RecordingDispatcher(), records=records))

    assert job(records, job_id).error["type"] == "context_too_long" and services.provider.requests == []


def test_an_empty_reply_fails_the_job_but_is_billed(turn):
    services, records, runtime, conversation, job_id = turn
    services.provider.steps.append(reply("", stop_reason="end_turn"))

    assert run_turn(services, job_id, runtime).ended == "failed"
    assert job(records, job_id).error["type"] == "empty_reply"
    assert records.turns == [] and len(records.usage) == 1 and records.usage[0]["output_tokens"] == 5


def test_a_refusal_is_stored_for_the_history_but_never_sent_again(turn):
    services, records, runtime, conversation, job_id = turn
    services.provider.steps.append(reply("I can't help with that.", stop_reason="refusal"))

    assert run_turn(services, job_id, runtime).ended == "succeeded"
    assert records.turns[0]["entry"]["outcome"] == "refused"
    assert job(records, job_id).reply["outcome"] == "refused" and job(records, job_id).reply["notice"]
    assert services.windows.saved[conversation.conversation_id].messages == []


def test_an_unexpected_error_fails_the_job_instead_of_retrying_it_forever(turn):
    services, records, runtime, conversation, job_id = turn

    def broken(request):
        raise KeyError("a bug")
    services.provider.steps.append(broken)

    assert run_turn(services, job_id, runtime).ended == "failed"
    assert job(records, job_id).error["type"] == "internal"
    assert services.events.types(job_id)[-1] == "job.failed"


def test_a_deleted_conversation_is_skipped_without_calling_the_model(turn):
    services, records, runtime, conversation, job_id = turn
    del records.conversations[conversation.conversation_id]

    assert run_turn(services, job_id, runtime).status == "skipped"
    assert services.provider.requests == []
