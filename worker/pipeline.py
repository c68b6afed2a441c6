"""The turn pipeline: one job becomes one turn. Plain Python; Celery only calls it."""
from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import redis
from sqlalchemy import exc as sql_errors

from shared.bootstrap import Services
from shared.cancel import Cancelled, CancelToken
from shared.jobs import Claim, announce_end
from shared.log_entry import LogEntry, LoggedMessage
from shared.logs import bind_context
from shared.memory import ConversationMemory, content_tokens
from shared.model import ModelError, ModelReply, ModelRequest
from shared.models import Conversation
from shared.replies import empty_reply_message, refusal_message, reply_outcome, sendable
from shared.storage import StorageUnavailable, turn_key
from shared.thinking import request_parts
from shared.tasks import Dispatcher
from shared.tools import window_for
from worker import metrics
from worker.lease import EndWatcher, LeaseKeeper
from worker.live import LiveEvents
from worker.records import TurnRecords
from worker.summary import summary_for_turn
from worker.thinking import job_fields, reply_content, turn_setting, usage_fields, window_tokens
from worker.tool_turns import announce_calls, calls_of, job_ending, offered_tools, past_the_guard
from worker.usage import count_quota, priced
from worker.window import load_window, save_window

log = logging.getLogger(__name__)

TRANSIENT = (sql_errors.OperationalError, sql_errors.InterfaceError, redis.ConnectionError,
             redis.TimeoutError, StorageUnavailable)
RETRY_SECONDS = 2.0


@dataclass
class Runtime:
    """What a worker process lends the pipeline: task sending, its name, its end watcher,
    its lease keeper, and the job's and turn's records (PostgreSQL's, unless a test stands
    a fake in). A runtime without records or keeper gets its own at the first turn."""
    dispatcher: Dispatcher
    worker: str | None = None
    watcher: EndWatcher | None = None
    records: TurnRecords | None = None
    leases: LeaseKeeper | None = None

    def watch(self, job_id: uuid.UUID) -> CancelToken:
        return self.watcher.watch(job_id) if self.watcher else CancelToken()

    def forget(self, job_id: uuid.UUID) -> None:
        if self.watcher:
            self.watcher.forget(job_id)


@dataclass(frozen=True)
class Outcome:
    """What became of a delivery: `done`, `skipped` (nothing to do) or `busy` (try later)."""
    status: str
    retry_after: float = 0.0
    ended: str = "succeeded"  # for `done`: how the job ended


def _queue_seconds(held: Claim) -> float | None:
    """Time from submit to the first claim; None for a retried job."""
    return (datetime.now(timezone.utc) - held.created_at).total_seconds() if held.attempt == 1 else None


def run_turn(services: Services, job_id: str, runtime: Runtime) -> Outcome:
    job_uuid = uuid.UUID(job_id)
    if runtime.records is None:
        runtime = replace(runtime, records=TurnRecords(services))
    if runtime.leases is None:
        runtime = replace(runtime, leases=LeaseKeeper(runtime.records))
    try:
        held = runtime.records.claim(job_uuid, runtime.worker)
        if held is None:
            return _why_not_claimed(runtime.records, job_uuid)
    except TRANSIENT as error:
        log.warning("job %s: cannot claim yet, will retry: %s", job_id, error)
        metrics.retry("transient")
        return Outcome("busy", retry_after=RETRY_SECONDS)
    bind_context(conversation_id=held.conversation_id, user_id=held.user_id)
    token = runtime.watch(held.job_id)
    try:
        with runtime.leases.holding(held, token):  # from the claim on: a window rebuild can outlast a lease
            outcome = _run_claimed(services, held, runtime, token)
        if outcome.status == "done":
            metrics.job_finished(outcome.ended, _queue_seconds(held))
        return outcome
    except Cancelled:
        log.info("job %s was cancelled while running", job_id)
        metrics.job_finished("cancelled", _queue_seconds(held))
        return Outcome("done", ended="cancelled")
    except TRANSIENT as error:
        # A backing service is down: hand the job back and let the task retry later.
        log.warning("job %s: %s unavailable, will retry: %s", job_id, type(error).__name__, error)
        try:
            runtime.records.release(held)
        except TRANSIENT:
            pass  # the lease runs out on its own
        metrics.retry("transient")
        return Outcome("busy", retry_after=RETRY_SECONDS)
    except Exception:
        log.exception("job %s failed unexpectedly", job_id)
        _finish_failed(services, held, runtime, "internal", "Parley failed to process this message.")
        metrics.job_finished("failed", _queue_seconds(held))
        return Outcome("done", ended="failed")
    finally:
        runtime.forget(held.job_id)


def _run_claimed(services: Services, held: Claim, runtime: Runtime, token: CancelToken) -> Outcome:
    records = runtime.records
    conversation = held.conversation
    if conversation is None:  # deleted while waiting; its jobs went with it
        return Outcome("skipped")
    live = LiveEvents(services, held.job_id, token)
    if held.attempt > 1:
        live.add("message.reset", {"reason": "retry", "attempt": held.attempt})  # drop earlier partial text
    live.add("job.started", {"attempt": held.attempt})

    memory = load_window(services, conversation)
    seq = conversation.turn_count + 1
    held = replace(held, content=records.content(held))
    memory.update_memory("user", held.content, content_tokens(held.content), seq=seq)
    try:
        request = _model_request(services, conversation, memory, held, live, token)
    except ModelError as refused:  # nothing was sent
        _finish_failed(services, held, runtime, refused.kind, refused.message)
        return Outcome("done", ended="failed")
    started = time.monotonic()
    try:
        reply = services.provider.complete(request)
    except ModelError as error:
        metrics.model_call(time.monotonic() - started, outcome=error.kind)
        message = (model_gone_message(services.settings, conversation, request.model, "retired by the provider")
                   if error.model_gone else error.message)
        _finish_failed(services, held, runtime, error.kind, message)
        return Outcome("done", ended="failed")
    metrics.model_call(time.monotonic() - started, reply.prompt_tokens, reply.output_tokens)
    if token.cancelled:
        raise Cancelled()
    reply, past_guard = past_the_guard(services.settings, held, reply)
    if past_guard:
        log.info("job %s: %s", held.job_id, past_guard)
    # A reply that only calls tools has no text, and is complete: its calls are its answer.
    outcome = "complete" if calls_of(reply) else reply_outcome(reply.stop_reason, reply.text)
    metrics.stop_reason(reply.stop_reason, outcome)
    if outcome == "empty":  # never stored: an empty assistant message would fail every later turn
        _finish_failed(services, held, runtime, "empty_reply", empty_reply_message(reply.stop_reason), billed=reply)
        count_quota(services, held.user_id, reply)
        return Outcome("done", ended="failed")
    user_tokens = memory.measure_last(reply.prompt_tokens, _prompt_key(request))
    if outcome == "refused":  # kept in the log for the history, never sent to the model again
        memory.discard_last()

    log_key = turn_key(conversation.s3_file_location, seq)
    # Fence: a claim lost meanwhile (cancelled, deleted, taken over) must not write this
    # seq, which is the next turn's or the new holder's, and may already be committed.
    if not records.renew(held):
        return Outcome("skipped")
    entry = _log_entry(held, seq, user_tokens, reply, memory, outcome)
    services.store.put(log_key, entry)
    if sendable(outcome):  # with its thinking blocks, sent back as they came; may drop turns: before the commit
        memory.update_memory("assistant", reply_content(reply), window_tokens(reply), seq=seq)
    memory.turn_seq = seq
    ended = _commit_turn(services, records, held, entry, log_key, user_tokens, reply, memory.window_start, outcome)
    if ended is None:  # the claim was taken over or the conversation deleted meanwhile
        if not records.exists(conversation.conversation_id):  # the entry just written would outlive it
            services.store.delete_prefix(conversation.s3_file_location)
        return Outcome("skipped")
    count_quota(services, held.user_id, reply)
    save_window(services, held.conversation_id, memory)
    announce_calls(live, reply)
    announce_end(services.events, runtime.dispatcher, *ended)
    return Outcome("done", ended=ended[0].status)  # succeeded, or requires_action


def _model_request(services: Services, conversation: Conversation, memory: ConversationMemory, held: Claim,
                   live: LiveEvents, token: CancelToken) -> ModelRequest:
    """What to ask the model for this turn; a ModelError if it cannot be asked at all."""
    context = memory.get_current_context()
    if not context:
        raise ModelError("context_too_long",
                         "The message alone is longer than the context window (MAX_CONTEXT_TOKENS).")
    settings = services.settings
    model = conversation.model or settings.default_model
    if model not in settings.model_choices:
        raise ModelError("invalid_request", model_gone_message(settings, conversation, model, "no longer offered"))
    summary = (summary_for_turn(services, conversation, memory, held.user_id, model, token)
               if settings.context_strategy == "summarize" else None)
    thinking, effort, max_tokens = request_parts(turn_setting(conversation, held.request), settings.max_tokens)
    tools, tool_choice = offered_tools(settings, conversation, held)
    return ModelRequest(system=conversation.system or settings.default_system_prompt, messages=window_for(context, tools),
                        model=model, max_tokens=max_tokens, temperature=settings.temperature,
                        thinking=thinking, effort=effort, summary=summary, tools=tools, tool_choice=tool_choice,
                        on_text=lambda text: live.add("message.delta", {"text": text}),
                        on_thinking=lambda text: live.add("thinking.delta", {"thinking": text}),
                        on_tool_input=lambda piece: live.add("tool.call.delta", piece),
                        on_reset=lambda: live.add("message.reset", {"reason": "retry"}), cancel=token)


def model_gone_message(settings, conversation: Conversation, model: str, why: str) -> str:
    """What a user whose conversation is pinned to a model that is gone should do."""
    choices = ", ".join(sorted(settings.model_choices - {model}))
    return (f"This conversation's model {model!r} is {why}; choose another with PATCH "
            f"/v1/conversations/{conversation.conversation_id} {{\"model\": ...}}: {choices} (GET /v1/models).")


def _prompt_key(request: ModelRequest) -> str:
    """What, besides the messages, the model counted in a request's input size."""
    parts = (request.model, request.system or "", request.summary or "")
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def _why_not_claimed(records: TurnRecords, job_id: uuid.UUID) -> Outcome:
    remaining = records.lease_left(job_id)
    if remaining is None:  # finished, deleted, or waiting behind an earlier turn that will dispatch it
        return Outcome("skipped")
    return Outcome("busy", retry_after=max(1.0, remaining))


def _log_entry(held: Claim, seq: int, user_tokens: int, reply: ModelReply, memory: ConversationMemory,
               outcome: str) -> dict:
    now = datetime.now(timezone.utc).isoformat()
    return LogEntry(
        seq=seq, job_id=str(held.job_id), outcome=outcome, stop_reason=reply.stop_reason, usage=reply.usage,
        messages=(LoggedMessage("user", held.content, user_tokens, held.created_at.isoformat()),
                  LoggedMessage("assistant", reply_content(reply), window_tokens(reply), now, reply.model)),
        prompt_overhead=memory.prompt_overhead, overhead_key=memory.overhead_key).to_dict()


def _commit_turn(services: Services, records: TurnRecords, held: Claim, entry: dict, log_key: str,
                 user_tokens: int, reply: ModelReply, window_start: int, outcome: str):
    """Turn row (with its log entry, for reading), counters, usage and job state in one
    transaction (shared/jobs commit_turn); returns the ended job and the next to run, or
    None if nothing was written."""
    cost = priced(services, reply)
    turn = {"seq": entry["seq"], "log_key": log_key, "user_tokens": user_tokens,
            "assistant_tokens": reply.output_tokens, "window_start": window_start, "entry": entry}
    job_reply = {"role": "assistant", "content": reply.text, **job_fields(reply), "model": reply.model,
                 "stop_reason": reply.stop_reason, "stop_details": reply.stop_details, "outcome": outcome,
                 **({"notice": refusal_message(reply.stop_details)} if outcome == "refused" else {}),
                 "usage": {**reply.usage, **usage_fields(reply), **reply.server_tool_use, "cost_usd": float(cost)}}
    return records.commit_turn(held, turn, reply.usage, cost, job_ending(reply), job_reply)


def _finish_failed(services: Services, held: Claim, runtime: Runtime, kind: str, message: str,
                   billed: ModelReply | None = None) -> None:
    """End the job failed; `billed` is a reply that stores nothing but was paid for (an empty one)."""
    cost = priced(services, billed) if billed else None
    ended = runtime.records.fail(held, {"type": kind, "message": message}, billed, cost)
    if ended is None:  # no longer this attempt's
        return
    log.info("job %s failed: %s", held.job_id, kind)
    announce_end(services.events, runtime.dispatcher, *ended)
