"""Property: whatever Claude answered before — text, nothing, a refusal, a cut-off reply,
a cancel, a failure — every request the window builds is valid under the Messages API's
rules (the offline model's validator states them: first message user, roles alternate,
last message user, no empty or whitespace-only text), and no refused message is ever sent
again. The turns are fed through the pipeline's own decisions (shared/replies.py)."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from offline_model.messages import text_of, validate_messages
from shared.memory import ConversationMemory
from shared.model.anthropic_api import anthropic_messages
from shared.replies import reply_outcome, sendable

# (stop_reason, reply text) per kind of answer; None: the job never produced a reply.
ANSWERS = {
    "normal": ("end_turn", "Here is an answer."),
    "empty": ("end_turn", ""),
    "blank": ("end_turn", " \n "),
    "refused": ("refusal", "Hello.."),
    "refused_silent": ("refusal", ""),
    "truncated": ("max_tokens", "A reply cut off in the mid"),
    "truncated_blank": ("max_tokens", "  "),
    "window": ("model_context_window_exceeded", "Partial "),
    "unknown": ("some_new_reason", "Still text."),
    "filtered": ("content_filtered", "Par"),
    "cancelled": None,
    "failed": None,
}
turns = st.lists(st.tuples(st.sampled_from(sorted(ANSWERS)), st.integers(1, 400)), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None, derandomize=True)  # fixed examples: the suite stays deterministic
@given(turns=turns, budget=st.integers(50, 2000), low_water=st.sampled_from([0.0, 0.6, 1.0]))
def test_every_request_the_window_builds_is_valid(turns, budget, low_water):
    memory = ConversationMemory(budget, low_water=low_water)
    refused_texts: set[str] = set()
    for seq, (kind, size) in enumerate(turns, start=1):
        user_text = f"message {seq} " + "x" * size
        before = ConversationMemory.from_json(memory.to_json())  # what the cache holds if the job ends unsaved
        memory.update_memory("user", user_text, seq=seq)
        context = memory.get_current_context()
        if context:  # an empty window is refused before any request (context_too_long)
            request = {"messages": anthropic_messages(context), "max_tokens": 64}
            validate_messages(request)  # raises BadRequest with the API's words on any rule broken
            sent = "\n".join(text_of(m["content"]) for m in request["messages"])
            assert not any(text in sent for text in refused_texts)
        answer = ANSWERS[kind]
        if answer is None or not context:
            memory = before  # the pipeline saves no window for a job that stored no turn
            continue
        outcome = reply_outcome(*answer)
        if outcome == "empty":
            memory = before
            continue
        if not sendable(outcome):
            memory.discard_last()
            refused_texts.add(user_text)
        else:
            memory.update_memory("assistant", answer[1], seq=seq)
        memory.turn_seq = seq
